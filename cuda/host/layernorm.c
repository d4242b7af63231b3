/* LayerNorm over the last dimension. Statistics and the normalisation are computed in double; mean and
 * rstd are saved as f32 for the backward, like the CUDA build saves them. */
#include <inttypes.h>

#include "host.h"

/* Rows whose dgamma/dbeta contributions are summed together before the per-block partials are combined
 * in block order: fixed, so that the parameter gradients do not depend on the thread count. */
#define LN_BLOCK_ROWS 32

int vs_layernorm_fwd(int dtype, int64_t rows, int64_t cols, float eps, const void* x, const void* residual,
                     void* sum_out, const void* gamma, const void* beta, void* y, float* mean, float* rstd,
                     vs_stream stream) {
  static const char* k = "vs_layernorm_fwd";
  int64_t total = 0;
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, &total, "rows cols", rows, cols));
  if (rows > 0 && cols == 0) {
    return vs_fail(VS_ERR_ARG, "%s: cols must be >= 1 when rows > 0, got rows %" PRId64 " and cols 0", k, rows);
  }
  if (!(eps >= 0.0f)) {
    return vs_fail(VS_ERR_ARG, "%s: eps must be >= 0, got %g", k, (double)eps);
  }
  VS_TRY(vs_check_ptr(k, "x", x, total));
  if (residual != NULL) {
    VS_TRY(vs_check_ptr(k, "sum_out (needed with a residual)", sum_out, total));
  }
  VS_TRY(vs_check_ptr(k, "gamma", gamma, total > 0 ? cols : 0));
  VS_TRY(vs_check_ptr(k, "beta", beta, total > 0 ? cols : 0));
  VS_TRY(vs_check_ptr(k, "y", y, total));
  VS_TRY(vs_check_ptr(k, "mean", mean, total > 0 ? rows : 0));
  VS_TRY(vs_check_ptr(k, "rstd", rstd, total > 0 ? rows : 0));
  if (total == 0) {
    return VS_OK;
  }
  const int64_t row_bytes = cols * (int64_t)sizeof(float);
  int failed = 0;
#pragma omp parallel num_threads(vs_team(8 * total))
  {
    float* v = vs_scratch(VS_SCRATCH_WORKER0, row_bytes);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      if (v == NULL) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      const int64_t base = r * cols;
      if (residual != NULL) {
        /* The block normalises the stored (rounded) sum, which is also what the backward receives. */
        for (int64_t c = 0; c < cols; c++) {
          const double s = (double)vs_load(dtype, x, base + c) + vs_load(dtype, residual, base + c);
          vs_store_d(dtype, sum_out, base + c, s);
          v[c] = vs_load(dtype, sum_out, base + c);
        }
      } else {
        for (int64_t c = 0; c < cols; c++) {
          v[c] = vs_load(dtype, x, base + c);
        }
      }
      double s1 = 0.0;
      for (int64_t c = 0; c < cols; c++) {
        s1 += v[c];
      }
      const double mu = s1 / (double)cols;
      /* Two passes: the one-pass E[x^2] - E[x]^2 loses everything when |mean| >> std. */
      double s2 = 0.0;
      for (int64_t c = 0; c < cols; c++) {
        const double d = v[c] - mu;
        s2 += d * d;
      }
      const double rs = 1.0 / sqrt(s2 / (double)cols + (double)eps);
      for (int64_t c = 0; c < cols; c++) {
        const double out = ((double)v[c] - mu) * rs * vs_load(dtype, gamma, c) + vs_load(dtype, beta, c);
        vs_store_d(dtype, y, base + c, out);
      }
      mean[r] = (float)mu;
      rstd[r] = (float)rs;
    }
  }
  if (failed) {
    return vs_fail_nomem(k, row_bytes);
  }
  return VS_OK;
}

int vs_layernorm_bwd(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                     const float* mean, const float* rstd, const void* dy, void* dx, int accumulate_dx,
                     float* dgamma, float* dbeta, vs_stream stream) {
  static const char* k = "vs_layernorm_bwd";
  int64_t total = 0;
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, &total, "rows cols", rows, cols));
  VS_TRY(vs_check_flag(k, "accumulate_dx", accumulate_dx));
  VS_TRY(vs_check_ptr(k, "x", x, total));
  VS_TRY(vs_check_ptr(k, "gamma", gamma, total > 0 ? cols : 0));
  VS_TRY(vs_check_ptr(k, "mean", mean, total > 0 ? rows : 0));
  VS_TRY(vs_check_ptr(k, "rstd", rstd, total > 0 ? rows : 0));
  VS_TRY(vs_check_ptr(k, "dy", dy, total));
  VS_TRY(vs_check_ptr(k, "dx", dx, total));
  VS_TRY(vs_check_ptr(k, "dgamma", dgamma, total > 0 ? cols : 0));
  VS_TRY(vs_check_ptr(k, "dbeta", dbeta, total > 0 ? cols : 0));
  if (total == 0) {
    return VS_OK;
  }
  const int64_t blocks = (rows + LN_BLOCK_ROWS - 1) / LN_BLOCK_ROWS;
  /* partial[blk] holds dgamma (cols) then dbeta (cols) of that block of rows. */
  const int64_t partial_bytes = blocks * 2 * cols * (int64_t)sizeof(double);
  double* partial = vs_scratch(VS_SCRATCH_CALLER0, partial_bytes);
  if (partial == NULL) {
    return vs_fail_nomem(k, partial_bytes);
  }
  const int64_t row_bytes = 2 * cols * (int64_t)sizeof(double);
  int failed = 0;
#pragma omp parallel num_threads(vs_team(12 * total))
  {
    double* buf = vs_scratch(VS_SCRATCH_WORKER0, row_bytes);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
      if (buf == NULL) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      double* xhat = buf;
      double* g = buf + cols;
      double* pg = partial + blk * 2 * cols;
      double* pb = pg + cols;
      for (int64_t c = 0; c < cols; c++) {
        pg[c] = 0.0;
        pb[c] = 0.0;
      }
      const int64_t r1 = (blk + 1) * LN_BLOCK_ROWS < rows ? (blk + 1) * LN_BLOCK_ROWS : rows;
      for (int64_t r = blk * LN_BLOCK_ROWS; r < r1; r++) {
        const int64_t base = r * cols;
        const double mu = mean[r];
        const double rs = rstd[r];
        double sum_g = 0.0;
        double sum_gx = 0.0;
        for (int64_t c = 0; c < cols; c++) {
          const double d = vs_load(dtype, dy, base + c);
          xhat[c] = ((double)vs_load(dtype, x, base + c) - mu) * rs;
          g[c] = d * vs_load(dtype, gamma, c);
          sum_g += g[c];
          sum_gx += g[c] * xhat[c];
          pg[c] += d * xhat[c];
          pb[c] += d;
        }
        const double mean_g = sum_g / (double)cols;
        const double mean_gx = sum_gx / (double)cols;
        for (int64_t c = 0; c < cols; c++) {
          double v = rs * (g[c] - mean_g - xhat[c] * mean_gx);
          if (accumulate_dx) {
            v += vs_load(dtype, dx, base + c);
          }
          vs_store_d(dtype, dx, base + c, v);
        }
      }
    }
  }
  if (failed) {
    return vs_fail_nomem(k, row_bytes);
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(2 * blocks * cols))
  for (int64_t c = 0; c < cols; c++) {
    double sg = dgamma[c];
    double sb = dbeta[c];
    for (int64_t blk = 0; blk < blocks; blk++) {
      sg += partial[blk * 2 * cols + c];
      sb += partial[blk * 2 * cols + cols + c];
    }
    dgamma[c] = (float)sg;
    dbeta[c] = (float)sb;
  }
  return VS_OK;
}
