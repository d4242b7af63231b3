/* Token bookkeeping: gathering and scattering rows by index, the sinusoid position table and the mean
 * and max over tokens used by the classifier's pooling. */
#include <inttypes.h>

#include "host.h"

int vs_gather_rows(int dtype, int64_t b, int64_t n_src, int64_t n_idx, int64_t c, const void* src,
                   int src_shared, const int32_t* idx, void* dst, vs_stream stream) {
  static const char* k = "vs_gather_rows";
  int64_t dst_numel = 0;
  VS_TRY(vs_check_any_dtype(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "b n_src c", b, n_src, c));
  VS_TRY(VS_DIMS(k, &dst_numel, "b n_idx c", b, n_idx, c));
  VS_TRY(vs_check_flag(k, "src_shared", src_shared));
  const int64_t src_numel = src_shared ? n_src * c : b * n_src * c;
  VS_TRY(vs_check_ptr(k, "idx", idx, b * n_idx));
  VS_TRY(vs_check_ptr(k, "src", src, dst_numel > 0 ? src_numel : 0));
  VS_TRY(vs_check_ptr(k, "dst", dst, dst_numel));
  VS_TRY(vs_check_indices(k, idx, b * n_idx, n_idx, n_src));
  if (dst_numel == 0) {
    return VS_OK;
  }
  /* Rows are moved as bytes, so every dtype works and the values are bit-exact. */
  const int64_t es = vs_dtype_size(dtype);
  const int64_t row_bytes = c * es;
  const char* s = src;
  char* d = dst;
#pragma omp parallel for schedule(static) num_threads(vs_team(dst_numel))
  for (int64_t r = 0; r < b * n_idx; r++) {
    const int64_t bi = r / n_idx;
    const int64_t src_row = (src_shared ? 0 : bi * n_src) + idx[r];
    memcpy(d + r * row_bytes, s + src_row * row_bytes, (size_t)row_bytes);
  }
  return VS_OK;
}

int vs_scatter_rows(int dtype, int64_t b, int64_t n_dst, int64_t n_idx, int64_t c, const void* src,
                    const int32_t* idx, void* dst, int accumulate, vs_stream stream) {
  static const char* k = "vs_scatter_rows";
  int64_t src_numel = 0;
  VS_TRY(vs_check_any_dtype(k, "dtype", dtype));
  VS_TRY(vs_check_flag(k, "accumulate", accumulate));
  if (accumulate) {
    VS_TRY(vs_check_float(k, "dtype (with accumulate)", dtype));
  }
  VS_TRY(VS_DIMS(k, NULL, "b n_dst c", b, n_dst, c));
  VS_TRY(VS_DIMS(k, &src_numel, "b n_idx c", b, n_idx, c));
  VS_TRY(vs_check_ptr(k, "idx", idx, b * n_idx));
  VS_TRY(vs_check_ptr(k, "src", src, src_numel));
  VS_TRY(vs_check_ptr(k, "dst", dst, src_numel > 0 ? b * n_dst * c : 0));
  VS_TRY(vs_check_indices(k, idx, b * n_idx, n_idx, n_dst));
  /* Repeated indices would make the result depend on the order of the writes (and race between
   * threads), so they are refused rather than left to chance. */
  if (b * n_idx > 0) {
    const int64_t stamp_bytes = n_dst * (int64_t)sizeof(int64_t);
    int64_t* stamp = vs_scratch(VS_SCRATCH_CALLER0, stamp_bytes);
    if (stamp == NULL) {
      return vs_fail_nomem(k, stamp_bytes);
    }
    memset(stamp, 0, (size_t)stamp_bytes);
    for (int64_t bi = 0; bi < b; bi++) {
      for (int64_t j = 0; j < n_idx; j++) {
        const int32_t t = idx[bi * n_idx + j];
        if (stamp[t] == bi + 1) {
          return vs_fail(VS_ERR_ARG,
                         "%s: idx[%" PRId64 ", %" PRId64 "] = %" PRId32 " repeats an index of batch entry %" PRId64
                         " (indices within one batch entry must be distinct)",
                         k, bi, j, t, bi);
        }
        stamp[t] = bi + 1;
      }
    }
  }
  if (src_numel == 0) {
    return VS_OK;
  }
  if (!accumulate) {
    const int64_t row_bytes = c * vs_dtype_size(dtype);
    const char* s = src;
    char* d = dst;
#pragma omp parallel for schedule(static) num_threads(vs_team(src_numel))
    for (int64_t r = 0; r < b * n_idx; r++) {
      const int64_t dst_row = (r / n_idx) * n_dst + idx[r];
      memcpy(d + dst_row * row_bytes, s + r * row_bytes, (size_t)row_bytes);
    }
    return VS_OK;
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(src_numel))
  for (int64_t r = 0; r < b * n_idx; r++) {
    const int64_t dst_row = (r / n_idx) * n_dst + idx[r];
    for (int64_t ch = 0; ch < c; ch++) {
      const double v = (double)vs_load(dtype, dst, dst_row * c + ch) + vs_load(dtype, src, r * c + ch);
      vs_store_d(dtype, dst, dst_row * c + ch, v);
    }
  }
  return VS_OK;
}

int vs_sinusoid_table(int dtype, int64_t n_pos, int64_t d, void* out, vs_stream stream) {
  static const char* k = "vs_sinusoid_table";
  int64_t total = 0;
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, &total, "n_pos d", n_pos, d));
  VS_TRY(vs_check_ptr(k, "out", out, total));
#pragma omp parallel for schedule(static) num_threads(vs_team(32 * total))
  for (int64_t pos = 0; pos < n_pos; pos++) {
    for (int64_t j = 0; j < d; j++) {
      /* j / 2 is integer division: channels 2i and 2i + 1 share a frequency. */
      const double angle = (double)pos / pow(10000.0, (double)(2 * (j / 2)) / (double)d);
      vs_store_d(dtype, out, pos * d + j, (j % 2 == 0) ? sin(angle) : cos(angle));
    }
  }
  return VS_OK;
}

#define MEAN_COLS 256

/* The checks the mean and the max over tokens share: a float dtype, sizes, at least one token, x and out. */
static int check_pool_fwd(const char* k, const char* what, int dtype, int64_t b, int64_t n, int64_t c,
                          const void* x, const void* out, int64_t* total) {
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, total, "b n c", b, n, c));
  if (n == 0 && b * c > 0) {
    return vs_fail(VS_ERR_ARG, "%s: n must be >= 1 to take a %s, got 0", k, what);
  }
  VS_TRY(vs_check_ptr(k, "x", x, *total));
  return vs_check_ptr(k, "out", out, b * c);
}

/* The checks the backward of the mean and of the max share: dout (b, c), dx (b, n, c), the flag. */
static int check_pool_bwd(const char* k, int dtype, int64_t b, int64_t n, int64_t c, const void* dout,
                          const void* dx, int accumulate, int64_t* total) {
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, total, "b n c", b, n, c));
  VS_TRY(vs_check_flag(k, "accumulate", accumulate));
  VS_TRY(vs_check_ptr(k, "dout", dout, *total > 0 ? b * c : 0));
  return vs_check_ptr(k, "dx", dx, *total);
}

int vs_mean_tokens_fwd(int dtype, int64_t b, int64_t n, int64_t c, const void* x, void* out,
                       vs_stream stream) {
  static const char* k = "vs_mean_tokens_fwd";
  int64_t total = 0;
  VS_TRY(check_pool_fwd(k, "mean", dtype, b, n, c, x, out, &total));
  const int64_t col_blocks = (c + MEAN_COLS - 1) / MEAN_COLS;
#pragma omp parallel for collapse(2) schedule(static) num_threads(vs_team(total))
  for (int64_t bi = 0; bi < b; bi++) {
    for (int64_t cb = 0; cb < col_blocks; cb++) {
      double acc[MEAN_COLS];
      const int64_t c0 = cb * MEAN_COLS;
      const int64_t w = c - c0 < MEAN_COLS ? c - c0 : MEAN_COLS;
      for (int64_t l = 0; l < w; l++) {
        acc[l] = 0.0;
      }
      for (int64_t t = 0; t < n; t++) {
        const int64_t base = (bi * n + t) * c + c0;
        for (int64_t l = 0; l < w; l++) {
          acc[l] += vs_load(dtype, x, base + l);
        }
      }
      for (int64_t l = 0; l < w; l++) {
        vs_store_d(dtype, out, bi * c + c0 + l, acc[l] / (double)n);
      }
    }
  }
  return VS_OK;
}

int vs_mean_tokens_bwd(int dtype, int64_t b, int64_t n, int64_t c, const void* dout, void* dx,
                       int accumulate, vs_stream stream) {
  static const char* k = "vs_mean_tokens_bwd";
  int64_t total = 0;
  VS_TRY(check_pool_bwd(k, dtype, b, n, c, dout, dx, accumulate, &total));
#pragma omp parallel for schedule(static) num_threads(vs_team(total))
  for (int64_t r = 0; r < b * n; r++) {
    const int64_t bi = r / n;
    for (int64_t ch = 0; ch < c; ch++) {
      double v = (double)vs_load(dtype, dout, bi * c + ch) / (double)n;
      if (accumulate) {
        v += vs_load(dtype, dx, r * c + ch);
      }
      vs_store_d(dtype, dx, r * c + ch, v);
    }
  }
  return VS_OK;
}

int vs_max_tokens_fwd(int dtype, int64_t b, int64_t n, int64_t c, const void* x, void* out, int32_t* argmax,
                      vs_stream stream) {
  static const char* k = "vs_max_tokens_fwd";
  int64_t total = 0;
  VS_TRY(check_pool_fwd(k, "max", dtype, b, n, c, x, out, &total));
  if (n > INT32_MAX) {
    return vs_fail(VS_ERR_ARG, "%s: n = %" PRId64 " does not fit the i32 argmax", k, n);
  }
  VS_TRY(vs_check_ptr(k, "argmax", argmax, b * c));
  const int64_t col_blocks = (c + MEAN_COLS - 1) / MEAN_COLS;
#pragma omp parallel for collapse(2) schedule(static) num_threads(vs_team(total))
  for (int64_t bi = 0; bi < b; bi++) {
    for (int64_t cb = 0; cb < col_blocks; cb++) {
      float best[MEAN_COLS];
      int32_t at[MEAN_COLS];
      const int64_t c0 = cb * MEAN_COLS;
      const int64_t w = c - c0 < MEAN_COLS ? c - c0 : MEAN_COLS;
      for (int64_t l = 0; l < w; l++) {
        best[l] = vs_load(dtype, x, bi * n * c + c0 + l);
        at[l] = 0;
      }
      for (int64_t t = 1; t < n; t++) {
        const int64_t base = (bi * n + t) * c + c0;
        for (int64_t l = 0; l < w; l++) {
          const float v = vs_load(dtype, x, base + l);
          /* Strictly greater keeps the first of equal values; a NaN, once taken, is never replaced. */
          if (best[l] == best[l] && (v > best[l] || v != v)) {
            best[l] = v;
            at[l] = (int32_t)t;
          }
        }
      }
      for (int64_t l = 0; l < w; l++) {
        vs_store(dtype, out, bi * c + c0 + l, best[l]);
        argmax[bi * c + c0 + l] = at[l];
      }
    }
  }
  return VS_OK;
}

int vs_max_tokens_bwd(int dtype, int64_t b, int64_t n, int64_t c, const void* dout, const int32_t* argmax,
                      void* dx, int accumulate, vs_stream stream) {
  static const char* k = "vs_max_tokens_bwd";
  int64_t total = 0;
  VS_TRY(check_pool_bwd(k, dtype, b, n, c, dout, dx, accumulate, &total));
  VS_TRY(vs_check_ptr(k, "argmax", argmax, total > 0 ? b * c : 0));
  if (total == 0) {
    return VS_OK;
  }
  VS_TRY(vs_check_indices(k, argmax, b * c, c, n));
  /* One thread owns a whole sample, so the zeroing and the scattered writes never race. */
#pragma omp parallel for schedule(static) num_threads(vs_team(total))
  for (int64_t bi = 0; bi < b; bi++) {
    if (!accumulate) {
      memset((char*)dx + bi * n * c * vs_dtype_size(dtype), 0, (size_t)(n * c * vs_dtype_size(dtype)));
    }
    for (int64_t ch = 0; ch < c; ch++) {
      const int64_t e = (bi * n + argmax[bi * c + ch]) * c + ch;
      double v = vs_load(dtype, dout, bi * c + ch);
      if (accumulate) {
        v += vs_load(dtype, dx, e);
      }
      vs_store_d(dtype, dx, e, v);
    }
  }
  return VS_OK;
}
