/* Non-causal softmax attention on the packed qkv layout, exact (no tiling approximations): every
 * logit is a double dot product of f32 values, softmax and the weighted sums are in double.
 *
 * Work is split by rows so that all threads stay busy even for one (batch, head): the forward and the
 * dq pass own one query row each, the dk/dv pass owns one key row each and recomputes the probabilities
 * it needs. That costs about 40% more arithmetic than a pass that scatters into dk/dv, but needs no
 * atomics or per-thread gradient copies and gives the same bits for any thread count. */
#include <inttypes.h>

#include "host.h"

static int check_shape(const char* k, int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim,
                       int64_t* qkv_numel, int64_t* out_numel, int64_t* lse_numel) {
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, qkv_numel, "b n 3 heads head_dim", b, n, 3, heads, head_dim));
  if (heads < 1) {
    return vs_fail(VS_ERR_ARG, "%s: heads must be >= 1, got %" PRId64, k, heads);
  }
  if (head_dim < 1) {
    return vs_fail(VS_ERR_ARG, "%s: head_dim must be >= 1, got %" PRId64, k, head_dim);
  }
  *out_numel = *qkv_numel / 3;
  *lse_numel = b * heads * n;
  return VS_OK;
}

int64_t vs_attention_workspace_bytes(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim) {
  int64_t qkv_numel = 0;
  int64_t out_numel = 0;
  int64_t lse_numel = 0;
  if (check_shape("vs_attention_workspace_bytes", dtype, b, n, heads, head_dim, &qkv_numel, &out_numel,
                  &lse_numel) != VS_OK) {
    return -1;
  }
  /* The host backward keeps its scratch per thread. */
  return 0;
}

/* Views of the packed tensors, all f32: qkv (b, n, 3, heads, hd) and do (b, n, heads, hd). */
typedef struct {
  const float* qkv;
  int64_t n;
  int64_t heads;
  int64_t hd;
} packed;

static inline const float* qkv_row(const packed* p, int64_t bi, int64_t i, int which, int64_t h) {
  return p->qkv + ((bi * p->n + i) * 3 + which) * p->heads * p->hd + h * p->hd;
}

int vs_attention_fwd(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim, float scale,
                     const void* qkv, void* out, float* lse, vs_stream stream) {
  static const char* k = "vs_attention_fwd";
  int64_t qkv_numel = 0;
  int64_t out_numel = 0;
  int64_t lse_numel = 0;
  VS_TRY(check_shape(k, dtype, b, n, heads, head_dim, &qkv_numel, &out_numel, &lse_numel));
  VS_TRY(vs_check_ptr(k, "qkv", qkv, qkv_numel));
  VS_TRY(vs_check_ptr(k, "out", out, out_numel));
  VS_TRY(vs_check_ptr(k, "lse", lse, lse_numel));
  if (qkv_numel == 0) {
    return VS_OK;
  }
  const float* q32 = qkv;
  if (dtype == VS_BF16) {
    const int64_t bytes = qkv_numel * (int64_t)sizeof(float);
    float* w = vs_scratch(VS_SCRATCH_CALLER0, bytes);
    if (w == NULL) {
      return vs_fail_nomem(k, bytes);
    }
    vs_to_f32(dtype, qkv, w, qkv_numel);
    q32 = w;
  }
  const packed p = {q32, n, heads, head_dim};
  const int64_t hd = head_dim;
  const int64_t rows = b * heads * n;
  const int64_t s_bytes = n * (int64_t)sizeof(double);
  const int64_t acc_bytes = hd * (int64_t)sizeof(double);
  int failed = 0;
#pragma omp parallel num_threads(vs_team((int64_t)fmin((double)rows * (double)n * (double)hd, 1e18)))
  {
    double* s = vs_scratch(VS_SCRATCH_WORKER0, s_bytes);
    double* acc = vs_scratch(VS_SCRATCH_WORKER1, acc_bytes);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      if (s == NULL || acc == NULL) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      /* Row r is query i of head h of batch entry bi; lse is laid out (b, heads, n) in the same order. */
      const int64_t i = r % n;
      const int64_t h = (r / n) % heads;
      const int64_t bi = r / (n * heads);
      const float* q = qkv_row(&p, bi, i, 0, h);
      double mx = -INFINITY;
      for (int64_t j = 0; j < n; j++) {
        s[j] = (double)scale * vs_dot(q, qkv_row(&p, bi, j, 1, h), hd);
        mx = s[j] > mx ? s[j] : mx;
      }
      for (int64_t d = 0; d < hd; d++) {
        acc[d] = 0.0;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < n; j++) {
        const double e = exp(s[j] - mx);
        sum += e;
        const float* v = qkv_row(&p, bi, j, 2, h);
        for (int64_t d = 0; d < hd; d++) {
          acc[d] += e * (double)v[d];
        }
      }
      const int64_t o = ((bi * n + i) * heads + h) * hd;
      for (int64_t d = 0; d < hd; d++) {
        vs_store_d(dtype, out, o + d, acc[d] / sum);
      }
      lse[r] = (float)(mx + log(sum));
    }
  }
  if (failed) {
    return vs_fail_nomem(k, s_bytes + acc_bytes);
  }
  return VS_OK;
}

int vs_attention_bwd(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim, float scale,
                     const void* qkv, const void* out, const void* dout, const float* lse, void* dqkv,
                     void* workspace, int64_t workspace_bytes, vs_stream stream) {
  static const char* k = "vs_attention_bwd";
  int64_t qkv_numel = 0;
  int64_t out_numel = 0;
  int64_t lse_numel = 0;
  VS_TRY(check_shape(k, dtype, b, n, heads, head_dim, &qkv_numel, &out_numel, &lse_numel));
  VS_TRY(vs_check_ptr(k, "qkv", qkv, qkv_numel));
  VS_TRY(vs_check_ptr(k, "out", out, out_numel));
  VS_TRY(vs_check_ptr(k, "dout", dout, out_numel));
  VS_TRY(vs_check_ptr(k, "lse", lse, lse_numel));
  VS_TRY(vs_check_ptr(k, "dqkv", dqkv, qkv_numel));
  if (workspace_bytes < 0) {
    return vs_fail(VS_ERR_ARG, "%s: workspace_bytes must be >= 0, got %" PRId64, k, workspace_bytes);
  }
  if (qkv_numel == 0) {
    return VS_OK;
  }
  const float* q32 = qkv;
  const float* do32 = dout;
  if (dtype == VS_BF16) {
    const int64_t q_bytes = qkv_numel * (int64_t)sizeof(float);
    const int64_t o_bytes = out_numel * (int64_t)sizeof(float);
    float* wq = vs_scratch(VS_SCRATCH_CALLER0, q_bytes);
    if (wq == NULL) {
      return vs_fail_nomem(k, q_bytes);
    }
    float* wo = vs_scratch(VS_SCRATCH_CALLER1, o_bytes);
    if (wo == NULL) {
      return vs_fail_nomem(k, o_bytes);
    }
    vs_to_f32(dtype, qkv, wq, qkv_numel);
    vs_to_f32(dtype, dout, wo, out_numel);
    q32 = wq;
    do32 = wo;
  }
  const packed p = {q32, n, heads, head_dim};
  const int64_t hd = head_dim;
  const int64_t rows = b * heads * n;

  /* delta[r] = dO_i . O_i, the softmax backward's row term, indexed like lse. */
  const int64_t delta_bytes = rows * (int64_t)sizeof(double);
  double* delta = vs_scratch(VS_SCRATCH_CALLER2, delta_bytes);
  if (delta == NULL) {
    return vs_fail_nomem(k, delta_bytes);
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(rows * hd))
  for (int64_t r = 0; r < rows; r++) {
    const int64_t i = r % n;
    const int64_t h = (r / n) % heads;
    const int64_t bi = r / (n * heads);
    const int64_t o = ((bi * n + i) * heads + h) * hd;
    double acc = 0.0;
    for (int64_t d = 0; d < hd; d++) {
      acc += (double)do32[o + d] * vs_load(dtype, out, o + d);
    }
    delta[r] = acc;
  }

  const int64_t acc_bytes = 2 * hd * (int64_t)sizeof(double);
  int failed = 0;
#pragma omp parallel num_threads(vs_team((int64_t)fmin((double)rows * (double)n * (double)hd, 1e18)))
  {
    double* acc = vs_scratch(VS_SCRATCH_WORKER1, acc_bytes);
    /* Pass 1: query rows, dq_i = scale sum_j dS_ij k_j. */
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      if (acc == NULL) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      const int64_t i = r % n;
      const int64_t h = (r / n) % heads;
      const int64_t bi = r / (n * heads);
      const float* q = qkv_row(&p, bi, i, 0, h);
      const float* g = do32 + ((bi * n + i) * heads + h) * hd;
      const double l = lse[r];
      for (int64_t d = 0; d < hd; d++) {
        acc[d] = 0.0;
      }
      for (int64_t j = 0; j < n; j++) {
        const float* kj = qkv_row(&p, bi, j, 1, h);
        const double pr = exp((double)scale * vs_dot(q, kj, hd) - l);
        const double ds = pr * (vs_dot(g, qkv_row(&p, bi, j, 2, h), hd) - delta[r]);
        for (int64_t d = 0; d < hd; d++) {
          acc[d] += ds * (double)kj[d];
        }
      }
      const int64_t o = ((bi * n + i) * 3 + 0) * heads * hd + h * hd;
      for (int64_t d = 0; d < hd; d++) {
        vs_store_d(dtype, dqkv, o + d, (double)scale * acc[d]);
      }
    }
    /* Pass 2: key rows, dk_j = scale sum_i dS_ij q_i and dv_j = sum_i P_ij dO_i. */
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      if (acc == NULL) {
        continue;
      }
      const int64_t j = r % n;
      const int64_t h = (r / n) % heads;
      const int64_t bi = r / (n * heads);
      const float* kj = qkv_row(&p, bi, j, 1, h);
      const float* vj = qkv_row(&p, bi, j, 2, h);
      double* dk = acc;
      double* dv = acc + hd;
      for (int64_t d = 0; d < hd; d++) {
        dk[d] = 0.0;
        dv[d] = 0.0;
      }
      const int64_t row0 = (bi * heads + h) * n;
      for (int64_t i = 0; i < n; i++) {
        const float* q = qkv_row(&p, bi, i, 0, h);
        const float* g = do32 + ((bi * n + i) * heads + h) * hd;
        const double pr = exp((double)scale * vs_dot(q, kj, hd) - (double)lse[row0 + i]);
        const double ds = pr * (vs_dot(g, vj, hd) - delta[row0 + i]);
        for (int64_t d = 0; d < hd; d++) {
          dk[d] += ds * (double)q[d];
          dv[d] += pr * (double)g[d];
        }
      }
      const int64_t ok = ((bi * n + j) * 3 + 1) * heads * hd + h * hd;
      const int64_t ov = ok + heads * hd;
      for (int64_t d = 0; d < hd; d++) {
        vs_store_d(dtype, dqkv, ok + d, (double)scale * dk[d]);
        vs_store_d(dtype, dqkv, ov + d, dv[d]);
      }
    }
  }
  if (failed) {
    return vs_fail_nomem(k, acc_bytes);
  }
  return VS_OK;
}
