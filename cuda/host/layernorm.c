/* LayerNorm over the last dimension. Statistics and the normalisation are computed in double; mean and
 * rstd are saved as f32 for the backward, like the CUDA build saves them. */
#include <inttypes.h>

#include "host.h"

/* Rows whose dgamma/dbeta contributions are summed together before the per-block partials are combined
 * in block order: fixed, so that the parameter gradients do not depend on the thread count. */
#define LN_BLOCK_ROWS 32

/* Row `base` of a f32 or bf16 tensor as f32: the row itself for f32, else converted into buf. */
static const float* row_f32(int dtype, const void* p, int64_t base, int64_t cols, float* buf) {
  if (dtype == VS_F32) {
    return (const float*)p + base;
  }
  for (int64_t c = 0; c < cols; c++) {
    buf[c] = vs_load(dtype, p, base + c);
  }
  return buf;
}

/* Sums in double over 8 lanes combined in a fixed order: vectorisable (a single running sum is not,
 * under strict IEEE semantics) and independent of the thread count. */
static double combine_lanes(const double* acc) {
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static double sum_lanes(const float* v, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; l++) {
      acc[l] += (double)v[i + l];
    }
  }
  double s = combine_lanes(acc);
  for (; i < n; i++) {
    s += (double)v[i];
  }
  return s;
}

/* sum (v[i] - mu)^2 in double. */
static double sq_dev_lanes(const float* v, int64_t n, double mu) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; l++) {
      const double d = (double)v[i + l] - mu;
      acc[l] += d * d;
    }
  }
  double s = combine_lanes(acc);
  for (; i < n; i++) {
    const double d = (double)v[i] - mu;
    s += d * d;
  }
  return s;
}

/* sum a[i] and sum a[i] b[i] in double. */
static void sum2_lanes(const double* a, const double* b, int64_t n, double* sum_a, double* sum_ab) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double acc2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; l++) {
      acc[l] += a[i + l];
      acc2[l] += a[i + l] * b[i + l];
    }
  }
  double s = combine_lanes(acc);
  double s2 = combine_lanes(acc2);
  for (; i < n; i++) {
    s += a[i];
    s2 += a[i] * b[i];
  }
  *sum_a = s;
  *sum_ab = s2;
}

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
    float* buf = vs_scratch(VS_SCRATCH_WORKER0, row_bytes);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      if (buf == NULL) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      const int64_t base = r * cols;
      const float* v;
      if (residual != NULL && dtype == VS_F32) {
        /* The f32 sum is the double sum rounded once, and it is what the block normalises. */
        const float* xr = (const float*)x + base;
        const float* rr = (const float*)residual + base;
        float* sr = (float*)sum_out + base;
        for (int64_t c = 0; c < cols; c++) {
          sr[c] = xr[c] + rr[c];
        }
        v = sr;
      } else if (residual != NULL) {
        /* The block normalises the stored (rounded) sum, which is also what the backward receives. */
        for (int64_t c = 0; c < cols; c++) {
          const double s = (double)vs_load(dtype, x, base + c) + vs_load(dtype, residual, base + c);
          vs_store_d(dtype, sum_out, base + c, s);
          buf[c] = vs_load(dtype, sum_out, base + c);
        }
        v = buf;
      } else {
        v = row_f32(dtype, x, base, cols, buf);
      }
      const double mu = sum_lanes(v, cols) / (double)cols;
      /* Two passes: the one-pass E[x^2] - E[x]^2 loses everything when |mean| >> std. */
      const double rs = 1.0 / sqrt(sq_dev_lanes(v, cols, mu) / (double)cols + (double)eps);
      if (dtype == VS_F32) {
        const float* g32 = gamma;
        const float* b32 = beta;
        float* yr = (float*)y + base;
        for (int64_t c = 0; c < cols; c++) {
          yr[c] = (float)(((double)v[c] - mu) * rs * (double)g32[c] + (double)b32[c]);
        }
      } else {
        for (int64_t c = 0; c < cols; c++) {
          const double out = ((double)v[c] - mu) * rs * vs_load(dtype, gamma, c) + vs_load(dtype, beta, c);
          vs_store_d(dtype, y, base + c, out);
        }
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
  const int64_t row_bytes = 2 * cols * ((int64_t)sizeof(double) + (int64_t)sizeof(float));
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
      float* x_buf = (float*)(buf + 2 * cols);
      float* dy_buf = x_buf + cols;
      double* pg = partial + blk * 2 * cols;
      double* pb = pg + cols;
      for (int64_t c = 0; c < cols; c++) {
        pg[c] = 0.0;
        pb[c] = 0.0;
      }
      const float* gamma32 = dtype == VS_F32 ? (const float*)gamma : NULL;
      const int64_t r1 = (blk + 1) * LN_BLOCK_ROWS < rows ? (blk + 1) * LN_BLOCK_ROWS : rows;
      for (int64_t r = blk * LN_BLOCK_ROWS; r < r1; r++) {
        const int64_t base = r * cols;
        const double mu = mean[r];
        const double rs = rstd[r];
        const float* xr = row_f32(dtype, x, base, cols, x_buf);
        const float* dyr = row_f32(dtype, dy, base, cols, dy_buf);
        for (int64_t c = 0; c < cols; c++) {
          const double d = dyr[c];
          const double gm = dtype == VS_F32 ? (double)gamma32[c] : (double)vs_load(dtype, gamma, c);
          xhat[c] = ((double)xr[c] - mu) * rs;
          g[c] = d * gm;
          pg[c] += d * xhat[c];
          pb[c] += d;
        }
        double sum_g = 0.0;
        double sum_gx = 0.0;
        sum2_lanes(g, xhat, cols, &sum_g, &sum_gx);
        const double mean_g = sum_g / (double)cols;
        const double mean_gx = sum_gx / (double)cols;
        if (dtype == VS_F32) {
          float* dxr = (float*)dx + base;
          for (int64_t c = 0; c < cols; c++) {
            const double v = rs * (g[c] - mean_g - xhat[c] * mean_gx);
            dxr[c] = (float)(accumulate_dx ? v + (double)dxr[c] : v);
          }
        } else {
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
