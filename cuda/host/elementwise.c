/* Elementwise kernels and the column sum. Arithmetic that can round twice is done in double and
 * rounded once to the output dtype. */
#include <inttypes.h>

#include "host.h"

int vs_cast(int src_dtype, int dst_dtype, int64_t n, const void* src, void* dst, vs_stream stream) {
  static const char* k = "vs_cast";
  VS_TRY(vs_check_any_dtype(k, "src_dtype", src_dtype));
  VS_TRY(vs_check_float(k, "dst_dtype", dst_dtype));
  if (src_dtype == VS_I32) {
    return vs_fail(VS_ERR_DTYPE, "%s: src_dtype 3 (i32) is not supported, use f32, bf16 or u8", k);
  }
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "src", src, n));
  VS_TRY(vs_check_ptr(k, "dst", dst, n));
  if (n == 0) {
    return VS_OK;
  }
  if (src_dtype == dst_dtype) {
    if (dst != src) {
      memmove(dst, src, (size_t)(n * vs_dtype_size(dst_dtype)));
    }
    return VS_OK;
  }
  if (src_dtype == VS_U8) {
    const uint8_t* s = src;
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
    for (int64_t i = 0; i < n; i++) {
      vs_store(dst_dtype, dst, i, (float)s[i]);
    }
    return VS_OK;
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
  for (int64_t i = 0; i < n; i++) {
    vs_store(dst_dtype, dst, i, vs_load(src_dtype, src, i));
  }
  return VS_OK;
}

int vs_fill(int dtype, int64_t n, float value, void* dst, vs_stream stream) {
  static const char* k = "vs_fill";
  VS_TRY(vs_check_any_dtype(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "dst", dst, n));
  if (dtype == VS_I32 || dtype == VS_U8) {
    const double lo = dtype == VS_I32 ? -2147483648.0 : 0.0;
    const double hi = dtype == VS_I32 ? 2147483647.0 : 255.0;
    /* An integer tensor takes only values it can hold exactly; anything else is a caller bug. */
    if (!(value >= lo && value <= hi) || (double)value != floor((double)value)) {
      return vs_fail(VS_ERR_ARG, "%s: value %g is not an integer in [%.0f, %.0f] for dtype %d (%s)", k,
                     (double)value, lo, hi, dtype, vs_dtype_name(dtype));
    }
  }
  switch (dtype) {
    case VS_F32: {
      float* d = dst;
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
      for (int64_t i = 0; i < n; i++) {
        d[i] = value;
      }
      break;
    }
    case VS_BF16: {
      uint16_t* d = dst;
      const uint16_t h = vs_f32_to_bf16(value);
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
      for (int64_t i = 0; i < n; i++) {
        d[i] = h;
      }
      break;
    }
    case VS_I32: {
      int32_t* d = dst;
      const int32_t iv = (int32_t)value;
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
      for (int64_t i = 0; i < n; i++) {
        d[i] = iv;
      }
      break;
    }
    default:
      if (n > 0) {
        memset(dst, (int)value, (size_t)n);
      }
      break;
  }
  return VS_OK;
}

int vs_add(int dtype, int64_t n, const void* a, const void* b, void* out, vs_stream stream) {
  static const char* k = "vs_add";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "a", a, n));
  VS_TRY(vs_check_ptr(k, "b", b, n));
  VS_TRY(vs_check_ptr(k, "out", out, n));
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
  for (int64_t i = 0; i < n; i++) {
    vs_store_d(dtype, out, i, (double)vs_load(dtype, a, i) + vs_load(dtype, b, i));
  }
  return VS_OK;
}

int vs_axpby(int dtype, int64_t n, float alpha, const void* x, float beta, void* y, vs_stream stream) {
  static const char* k = "vs_axpby";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "x", x, n));
  VS_TRY(vs_check_ptr(k, "y", y, n));
  if (beta == 0.0f) {
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
    for (int64_t i = 0; i < n; i++) {
      vs_store_d(dtype, y, i, (double)alpha * vs_load(dtype, x, i));
    }
  } else {
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
    for (int64_t i = 0; i < n; i++) {
      double v = (double)alpha * vs_load(dtype, x, i) + (double)beta * vs_load(dtype, y, i);
      vs_store_d(dtype, y, i, v);
    }
  }
  return VS_OK;
}

int vs_add_bcast(int dtype, int64_t outer, int64_t inner, const void* a, const void* b, void* out,
                 vs_stream stream) {
  static const char* k = "vs_add_bcast";
  int64_t total = 0;
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, &total, "outer inner", outer, inner));
  VS_TRY(vs_check_ptr(k, "a", a, total));
  VS_TRY(vs_check_ptr(k, "b", b, total > 0 ? inner : 0));
  VS_TRY(vs_check_ptr(k, "out", out, total));
#pragma omp parallel for schedule(static) num_threads(vs_team(total))
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t i = 0; i < inner; i++) {
      vs_store_d(dtype, out, o * inner + i, (double)vs_load(dtype, a, o * inner + i) + vs_load(dtype, b, i));
    }
  }
  return VS_OK;
}

/* Rows per partial sum in vs_sum_outer; fixed so the result does not depend on the thread count. */
#define SUM_ROWS 256
#define SUM_COLS 1024

int vs_sum_outer(int dtype, int64_t outer, int64_t inner, const void* x, float* out, int accumulate,
                 vs_stream stream) {
  static const char* k = "vs_sum_outer";
  int64_t total = 0;
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, &total, "outer inner", outer, inner));
  VS_TRY(vs_check_flag(k, "accumulate", accumulate));
  VS_TRY(vs_check_ptr(k, "x", x, total));
  VS_TRY(vs_check_ptr(k, "out", out, inner));
  if (inner == 0) {
    return VS_OK;
  }
  const int64_t row_blocks = (outer + SUM_ROWS - 1) / SUM_ROWS;
  const int64_t col_blocks = (inner + SUM_COLS - 1) / SUM_COLS;
  double* partial = NULL;
  if (row_blocks > 0) {
    const int64_t bytes = row_blocks * inner * (int64_t)sizeof(double);
    partial = vs_scratch(VS_SCRATCH_CALLER0, bytes);
    if (partial == NULL) {
      return vs_fail_nomem(k, bytes);
    }
  }
#pragma omp parallel for collapse(2) schedule(static) num_threads(vs_team(total))
  for (int64_t rb = 0; rb < row_blocks; rb++) {
    for (int64_t cb = 0; cb < col_blocks; cb++) {
      const int64_t c0 = cb * SUM_COLS;
      const int64_t c1 = c0 + SUM_COLS < inner ? c0 + SUM_COLS : inner;
      const int64_t r1 = (rb + 1) * SUM_ROWS < outer ? (rb + 1) * SUM_ROWS : outer;
      double* acc = partial + rb * inner;
      for (int64_t c = c0; c < c1; c++) {
        acc[c] = 0.0;
      }
      for (int64_t r = rb * SUM_ROWS; r < r1; r++) {
        for (int64_t c = c0; c < c1; c++) {
          acc[c] += vs_load(dtype, x, r * inner + c);
        }
      }
    }
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(row_blocks * inner))
  for (int64_t c = 0; c < inner; c++) {
    double s = accumulate ? (double)out[c] : 0.0;
    for (int64_t rb = 0; rb < row_blocks; rb++) {
      s += partial[rb * inner + c];
    }
    out[c] = (float)s;
  }
  return VS_OK;
}

int vs_scale_rows(int dtype, int64_t rows, int64_t inner, const void* x, const float* scale, void* out,
                  vs_stream stream) {
  static const char* k = "vs_scale_rows";
  int64_t total = 0;
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, &total, "rows inner", rows, inner));
  VS_TRY(vs_check_ptr(k, "x", x, total));
  VS_TRY(vs_check_ptr(k, "scale", scale, total > 0 ? rows : 0));
  VS_TRY(vs_check_ptr(k, "out", out, total));
#pragma omp parallel for schedule(static) num_threads(vs_team(total))
  for (int64_t r = 0; r < rows; r++) {
    const float s = scale[r];
    for (int64_t i = 0; i < inner; i++) {
      vs_store_d(dtype, out, r * inner + i, (double)vs_load(dtype, x, r * inner + i) * s);
    }
  }
  return VS_OK;
}

int vs_gelu_fwd(int dtype, int64_t n, const void* x, void* y, vs_stream stream) {
  static const char* k = "vs_gelu_fwd";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "x", x, n));
  VS_TRY(vs_check_ptr(k, "y", y, n));
  if (dtype == VS_F32) {
    /* Spelled out for f32 so that the loop vectorises (the generic one stores through a dtype switch). */
    const float* xf = x;
    float* yf = y;
#pragma omp parallel for schedule(static) num_threads(vs_team(16 * n))
    for (int64_t i = 0; i < n; i++) {
      yf[i] = (float)vs_gelu(xf[i]);
    }
    return VS_OK;
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(16 * n))
  for (int64_t i = 0; i < n; i++) {
    vs_store_d(dtype, y, i, vs_gelu(vs_load(dtype, x, i)));
  }
  return VS_OK;
}

int vs_gelu_bwd(int dtype, int64_t n, const void* x, const void* dy, void* dx, vs_stream stream) {
  static const char* k = "vs_gelu_bwd";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "x", x, n));
  VS_TRY(vs_check_ptr(k, "dy", dy, n));
  VS_TRY(vs_check_ptr(k, "dx", dx, n));
  if (dtype == VS_F32) {
    const float* xf = x;
    const float* dyf = dy;
    float* dxf = dx;
#pragma omp parallel for schedule(static) num_threads(vs_team(16 * n))
    for (int64_t i = 0; i < n; i++) {
      dxf[i] = (float)((double)dyf[i] * vs_gelu_grad(xf[i]));
    }
    return VS_OK;
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(16 * n))
  for (int64_t i = 0; i < n; i++) {
    const double g = vs_gelu_grad(vs_load(dtype, x, i));
    vs_store_d(dtype, dx, i, (double)vs_load(dtype, dy, i) * g);
  }
  return VS_OK;
}
