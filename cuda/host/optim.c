/* Optimiser kernels: gradient norm and clipping coefficient, AdamW, the non-finite check. */
#include <inttypes.h>

#include "host.h"

int vs_grad_norm(int64_t n, const float* g, float* norm, vs_stream stream) {
  static const char* k = "vs_grad_norm";
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "g", g, n));
  VS_TRY(vs_check_ptr(k, "norm", norm, 1));
  const int64_t blocks = (n + VS_REDUCE_BLOCK - 1) / VS_REDUCE_BLOCK;
  double* partial = NULL;
  if (blocks > 0) {
    const int64_t bytes = blocks * (int64_t)sizeof(double);
    partial = vs_scratch(VS_SCRATCH_CALLER0, bytes);
    if (partial == NULL) {
      return vs_fail_nomem(k, bytes);
    }
  }
  /* Fixed blocks summed in order: the norm, and so the clipping, is the same for any thread count. */
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
  for (int64_t blk = 0; blk < blocks; blk++) {
    const int64_t i0 = blk * VS_REDUCE_BLOCK;
    const int64_t i1 = i0 + VS_REDUCE_BLOCK < n ? i0 + VS_REDUCE_BLOCK : n;
    partial[blk] = vs_dot(g + i0, g + i0, i1 - i0);
  }
  double total = 0.0;
  for (int64_t blk = 0; blk < blocks; blk++) {
    total += partial[blk];
  }
  norm[0] = (float)sqrt(total);
  return VS_OK;
}

int vs_clip_coef(const float* norm, float max_norm, float* coef, vs_stream stream) {
  static const char* k = "vs_clip_coef";
  VS_TRY(vs_check_ptr(k, "norm", norm, 1));
  VS_TRY(vs_check_ptr(k, "coef", coef, 1));
  /* f32 arithmetic as torch does it on a f32 norm; a NaN norm stays NaN so the caller sees it. */
  const float c = max_norm / (norm[0] + 1e-6f);
  coef[0] = c > 1.0f ? 1.0f : c;
  return VS_OK;
}

/* One element of AdamW, given the step's constants (see vs_adamw). */
static inline void adamw_one(int64_t i, float* param, const float* grad, float* m, float* v, double gs,
                             double b1, double b2, double bc2_sqrt, double step_size, double decay, double e) {
  const double g = (double)grad[i] * gs;
  /* The moments are rounded to f32 as they are stored, and the update uses the stored values, as
   * torch's in-place tensor updates do. */
  const float mi = (float)(b1 * (double)m[i] + (1.0 - b1) * g);
  const float vi = (float)(b2 * (double)v[i] + (1.0 - b2) * g * g);
  const double p = (double)param[i] * decay - step_size * (double)mi / (sqrt((double)vi) / bc2_sqrt + e);
  m[i] = mi;
  v[i] = vi;
  param[i] = (float)p;
}

int vs_adamw(int64_t n, float* param, void* param_bf16, const float* grad, float* m, float* v, float lr,
             float beta1, float beta2, float eps, float weight_decay, int64_t step, const float* grad_scale,
             vs_stream stream) {
  static const char* k = "vs_adamw";
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  if (step < 1) {
    return vs_fail(VS_ERR_ARG, "%s: step counts from 1, got %" PRId64, k, step);
  }
  if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f)) {
    return vs_fail(VS_ERR_ARG, "%s: beta1 and beta2 must be in [0, 1), got beta1 %g and beta2 %g", k,
                   (double)beta1, (double)beta2);
  }
  VS_TRY(vs_check_ptr(k, "param", param, n));
  VS_TRY(vs_check_ptr(k, "grad", grad, n));
  VS_TRY(vs_check_ptr(k, "m", m, n));
  VS_TRY(vs_check_ptr(k, "v", v, n));
  if (n == 0) {
    return VS_OK;
  }
  const double gs = grad_scale != NULL ? (double)grad_scale[0] : 1.0;
  const double b1 = beta1;
  const double b2 = beta2;
  const double bc1 = 1.0 - pow(b1, (double)step);
  const double bc2_sqrt = sqrt(1.0 - pow(b2, (double)step));
  const double step_size = (double)lr / bc1;
  const double decay = 1.0 - (double)lr * (double)weight_decay;
  const double e = eps;
  uint16_t* p16 = param_bf16;
  /* Two loops rather than a test per element, so that both vectorise. */
  if (p16 == NULL) {
#pragma omp parallel for schedule(static) num_threads(vs_team(8 * n))
    for (int64_t i = 0; i < n; i++) {
      adamw_one(i, param, grad, m, v, gs, b1, b2, bc2_sqrt, step_size, decay, e);
    }
  } else {
#pragma omp parallel for schedule(static) num_threads(vs_team(8 * n))
    for (int64_t i = 0; i < n; i++) {
      adamw_one(i, param, grad, m, v, gs, b1, b2, bc2_sqrt, step_size, decay, e);
      p16[i] = vs_f32_to_bf16(param[i]);
    }
  }
  return VS_OK;
}

int vs_nonfinite(int dtype, int64_t n, const void* x, int32_t* flag, vs_stream stream) {
  static const char* k = "vs_nonfinite";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "x", x, n));
  VS_TRY(vs_check_ptr(k, "flag", flag, 1));
  int found = 0;
  if (dtype == VS_F32) {
    const uint32_t* u = x;
#pragma omp parallel for schedule(static) reduction(| : found) num_threads(vs_team(n))
    for (int64_t i = 0; i < n; i++) {
      found |= (u[i] & 0x7f800000u) == 0x7f800000u;
    }
  } else {
    const uint16_t* h = x;
#pragma omp parallel for schedule(static) reduction(| : found) num_threads(vs_team(n))
    for (int64_t i = 0; i < n; i++) {
      found |= (h[i] & 0x7f80u) == 0x7f80u;
    }
  }
  if (found) {
    flag[0] = 1;
  }
  return VS_OK;
}
