/* Non-causal softmax attention on the packed qkv layout, as blocked BLAS.
 *
 * For each (batch, head) and block of ATT_BQ queries: S = scale Q K^T with sgemm, an f32 softmax row by
 * row (max, then a vectorised exp with the sum kept in double), O = P V with sgemm. Only a block of S
 * (ATT_BQ x n per thread) exists at a time, so memory stays O(n) per head. The backward recomputes each
 * block's probabilities once from the saved log-sum-exp and forms dV += P^T dO, dP = dO V^T,
 * dS = P (dP - delta), dQ = scale dS K and dK += scale dS^T Q, all with sgemm.
 *
 * The blocks are fixed by the shape alone and each is computed by one thread with a single-threaded
 * sgemm, so the bits do not depend on the thread count: the forward shares out (batch, head, query
 * block) items; the backward shares out (batch, head) items, because dK and dV sum over every query
 * block of the head and that sum is done in block order by the one thread that owns the head. */
#include <cblas.h>
#include <inttypes.h>

#include "host.h"

/* Queries per block: S and dP blocks of 2 x 64 x n f32 stay in L2 for n up to a few thousand. */
#define ATT_BQ 64

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
  const int64_t blas_max = (int64_t)(((uint64_t)1 << (8 * sizeof(blasint) - 1)) - 1);
  if (n > blas_max || 3 * heads * head_dim > blas_max) {
    return vs_fail(VS_ERR_ARG, "%s: n %" PRId64 " or 3 * heads * head_dim %" PRId64 " exceed the BLAS size limit %" PRId64,
                   k, n, 3 * heads * head_dim, blas_max);
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

/* Strided views of one (batch, head): row i of Q, K or V is base + i * ld. */
typedef struct {
  const float* q;
  const float* k;
  const float* v;
  int64_t ld; /* 3 heads hd: the qkv row stride */
} head_view;

static head_view head_of(const float* qkv, int64_t bi, int64_t h, int64_t n, int64_t heads, int64_t hd) {
  const float* base = qkv + bi * n * 3 * heads * hd + h * hd;
  return (head_view){base, base + heads * hd, base + 2 * heads * hd, 3 * heads * hd};
}

/* OpenBLAS runs its own thread pool per call; inside our parallel regions every sgemm must run on the
 * calling thread, both for speed (no nested pools fighting over 2 cores) and so that each block's bits
 * are those of the single-threaded kernel whatever the thread count. The setting is process wide, so
 * it is put back afterwards. */
static int blas_serial_begin(void) {
  const int t = openblas_get_num_threads();
  if (t != 1) {
    openblas_set_num_threads(1);
  }
  return t;
}

static void blas_serial_end(int saved) {
  if (saved != 1) {
    openblas_set_num_threads(saved);
  }
}

/* row (n) := e^(row - max(row)); returns the sum of the new row, *shift the max. The sum is in double
 * over 8 lanes so that the loop vectorises and loses nothing to f32 accumulation. */
static double softmax_row_exp(float* row, int64_t n, float* shift) {
  float mx8[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; l++) {
      mx8[l] = row[j + l] > mx8[l] ? row[j + l] : mx8[l];
    }
  }
  float mx = -INFINITY;
  for (int l = 0; l < 8; l++) {
    mx = mx8[l] > mx ? mx8[l] : mx;
  }
  for (; j < n; j++) {
    mx = row[j] > mx ? row[j] : mx;
  }
  /* A row of -inf logits (only from -inf inputs) would otherwise give e^(-inf - -inf) = NaN. */
  const float sh = mx == -INFINITY ? 0.0f : mx;
  double sum8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (j = 0; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; l++) {
      const float e = vs_expf(row[j + l] - sh);
      row[j + l] = e;
      sum8[l] += (double)e;
    }
  }
  double sum = ((sum8[0] + sum8[4]) + (sum8[1] + sum8[5])) + ((sum8[2] + sum8[6]) + (sum8[3] + sum8[7]));
  for (; j < n; j++) {
    row[j] = vs_expf(row[j] - sh);
    sum += (double)row[j];
  }
  *shift = sh;
  return sum;
}

/* Threads for an attention call: about 4 n^2 hd multiply-adds per (batch, head). */
static int attention_team(int64_t b, int64_t n, int64_t heads, int64_t hd) {
  return vs_team((int64_t)fmin(4.0 * (double)b * (double)heads * (double)n * (double)n * (double)hd, 1e18));
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
  const int64_t hd = head_dim;
  const int64_t ldo = heads * hd;
  const int64_t qblocks = (n + ATT_BQ - 1) / ATT_BQ;
  const int64_t items = b * heads * qblocks;
  const int64_t s_bytes = ATT_BQ * n * (int64_t)sizeof(float);
  const int64_t o_bytes = ATT_BQ * hd * (int64_t)sizeof(float);
  int failed = 0;
  const int saved = blas_serial_begin();
#pragma omp parallel num_threads(attention_team(b, n, heads, hd))
  {
    float* s = vs_scratch(VS_SCRATCH_WORKER0, s_bytes);
    float* o_tmp = dtype == VS_F32 ? NULL : vs_scratch(VS_SCRATCH_WORKER1, o_bytes);
    double inv_sum[ATT_BQ];
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      if (s == NULL || (dtype != VS_F32 && o_tmp == NULL)) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      const int64_t qb = it % qblocks;
      const int64_t h = (it / qblocks) % heads;
      const int64_t bi = it / (qblocks * heads);
      const int64_t i0 = qb * ATT_BQ;
      const int64_t m = n - i0 < ATT_BQ ? n - i0 : ATT_BQ;
      const head_view hv = head_of(q32, bi, h, n, heads, hd);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)hd, scale,
                  hv.q + i0 * hv.ld, (blasint)hv.ld, hv.k, (blasint)hv.ld, 0.0f, s, (blasint)n);
      float* lse_blk = lse + (bi * heads + h) * n + i0;
      for (int64_t r = 0; r < m; r++) {
        float shift = 0.0f;
        const double sum = softmax_row_exp(s + r * n, n, &shift);
        lse_blk[r] = (float)((double)shift + log(sum));
        inv_sum[r] = 1.0 / sum;
      }
      /* O = E V with E the unnormalised exponentials, then each row is divided by its sum: hd values
       * per row to scale instead of n, and the division is done once in double. */
      float* o = dtype == VS_F32 ? (float*)out + (bi * n + i0) * ldo + h * hd : o_tmp;
      const int64_t ld_o = dtype == VS_F32 ? ldo : hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)hd, (blasint)n, 1.0f, s,
                  (blasint)n, hv.v, (blasint)hv.ld, 0.0f, o, (blasint)ld_o);
      for (int64_t r = 0; r < m; r++) {
        const int64_t dst = (bi * n + i0 + r) * ldo + h * hd;
        for (int64_t d = 0; d < hd; d++) {
          vs_store_d(dtype, out, dst + d, (double)o[r * ld_o + d] * inv_sum[r]);
        }
      }
    }
  }
  blas_serial_end(saved);
  if (failed) {
    return vs_fail_nomem(k, s_bytes + o_bytes);
  }
  return VS_OK;
}

/* Per-thread buffers of the backward. */
typedef struct {
  float* p;     /* (ATT_BQ, n) probabilities of the block */
  float* dp;    /* (ATT_BQ, n) dP, then dS in place */
  float* grads; /* bf16 only: (ATT_BQ + 2 n, hd) f32 dQ block, dK and dV of the head */
} bwd_buffers;

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
  const int64_t hd = head_dim;
  const int64_t ldo = heads * hd;
  const int64_t ldq = 3 * heads * hd;
  const int64_t qblocks = (n + ATT_BQ - 1) / ATT_BQ;
  const int64_t pd_bytes = ATT_BQ * n * (int64_t)sizeof(float);
  const int64_t g_bytes = (ATT_BQ + 2 * n) * hd * (int64_t)sizeof(float);
  int failed = 0;
  const int saved = blas_serial_begin();
#pragma omp parallel num_threads(attention_team(b, n, heads, hd))
  {
    bwd_buffers buf = {vs_scratch(VS_SCRATCH_WORKER0, pd_bytes), vs_scratch(VS_SCRATCH_WORKER1, pd_bytes),
                       dtype == VS_F32 ? NULL : vs_scratch(VS_SCRATCH_WORKER2, g_bytes)};
    double delta[ATT_BQ];
#pragma omp for schedule(static)
    for (int64_t it = 0; it < b * heads; it++) {
      if (buf.p == NULL || buf.dp == NULL || (dtype != VS_F32 && buf.grads == NULL)) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      const int64_t h = it % heads;
      const int64_t bi = it / heads;
      const head_view hv = head_of(q32, bi, h, n, heads, hd);
      /* dQ, dK, dV of this head: in place in dqkv for f32 (row stride ldq), else f32 staging rows. */
      float* dq_base = (float*)dqkv + bi * n * ldq + h * hd;
      float* dk = dtype == VS_F32 ? dq_base + heads * hd : buf.grads + ATT_BQ * hd;
      float* dv = dtype == VS_F32 ? dq_base + 2 * heads * hd : buf.grads + (ATT_BQ + n) * hd;
      const int64_t ld_g = dtype == VS_F32 ? ldq : hd;
      const float* lse_head = lse + (bi * heads + h) * n;
      for (int64_t qb = 0; qb < qblocks; qb++) {
        const int64_t i0 = qb * ATT_BQ;
        const int64_t m = n - i0 < ATT_BQ ? n - i0 : ATT_BQ;
        const float* q_blk = hv.q + i0 * hv.ld;
        const float* do_blk = do32 + (bi * n + i0) * ldo + h * hd;
        const float beta = qb == 0 ? 0.0f : 1.0f;
        float* p = buf.p;
        float* ds = buf.dp;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)hd, scale,
                    q_blk, (blasint)ldq, hv.k, (blasint)ldq, 0.0f, p, (blasint)n);
        for (int64_t r = 0; r < m; r++) {
          const float l = lse_head[i0 + r];
          float* row = p + r * n;
          for (int64_t j = 0; j < n; j++) {
            row[j] = vs_expf(row[j] - l);
          }
          /* delta_i = dO_i . O_i, the softmax backward's row term. */
          const int64_t o_row = (bi * n + i0 + r) * ldo + h * hd;
          double acc = 0.0;
          for (int64_t d = 0; d < hd; d++) {
            acc += (double)do32[o_row + d] * vs_load(dtype, out, o_row + d);
          }
          delta[r] = acc;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)n, (blasint)hd, (blasint)m, 1.0f, p,
                    (blasint)n, do_blk, (blasint)ldo, beta, dv, (blasint)ld_g);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)hd, 1.0f,
                    do_blk, (blasint)ldo, hv.v, (blasint)ldq, 0.0f, ds, (blasint)n);
        for (int64_t r = 0; r < m; r++) {
          const float dl = (float)delta[r];
          const float* pr = p + r * n;
          float* dr = ds + r * n;
          for (int64_t j = 0; j < n; j++) {
            dr[j] = pr[j] * (dr[j] - dl);
          }
        }
        float* dq = dtype == VS_F32 ? dq_base + i0 * ldq : buf.grads;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)hd, (blasint)n, scale, ds,
                    (blasint)n, hv.k, (blasint)ldq, 0.0f, dq, (blasint)ld_g);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)n, (blasint)hd, (blasint)m, scale, ds,
                    (blasint)n, q_blk, (blasint)ldq, beta, dk, (blasint)ld_g);
        if (dtype != VS_F32) {
          for (int64_t r = 0; r < m; r++) {
            for (int64_t d = 0; d < hd; d++) {
              vs_store(dtype, dqkv, (bi * n + i0 + r) * ldq + h * hd + d, dq[r * hd + d]);
            }
          }
        }
      }
      if (dtype != VS_F32) {
        for (int64_t j = 0; j < n; j++) {
          for (int64_t d = 0; d < hd; d++) {
            const int64_t dst = (bi * n + j) * ldq + h * hd + d;
            vs_store(dtype, dqkv, dst + heads * hd, dk[j * hd + d]);
            vs_store(dtype, dqkv, dst + 2 * heads * hd, dv[j * hd + d]);
          }
        }
      }
    }
  }
  blas_serial_end(saved);
  if (failed) {
    return vs_fail_nomem(k, 2 * pd_bytes + g_bytes);
  }
  return VS_OK;
}
