/* Error recording and the argument checks every entry point runs before touching memory. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "host.h"

/* Per thread because FFI calls may come from several threads and each reads its own failure. */
static _Thread_local char g_last_error[1024];

const char* vs_last_error(void) {
  return g_last_error;
}

int vs_fail(int status, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, args);
  va_end(args);
  return status;
}

int vs_fail_nomem(const char* kernel, int64_t bytes) {
  return vs_fail(VS_ERR_NOMEM, "%s: could not allocate %" PRId64 " bytes of scratch memory", kernel, bytes);
}

const char* vs_dtype_name(int dtype) {
  switch (dtype) {
    case VS_F32:
      return "f32";
    case VS_BF16:
      return "bf16";
    case VS_U8:
      return "u8";
    case VS_I32:
      return "i32";
    default:
      return "unknown";
  }
}

int64_t vs_dtype_size(int dtype) {
  switch (dtype) {
    case VS_F32:
    case VS_I32:
      return 4;
    case VS_BF16:
      return 2;
    case VS_U8:
      return 1;
    default:
      return 0;
  }
}

int vs_check_float(const char* kernel, const char* what, int dtype) {
  if (dtype == VS_F32 || dtype == VS_BF16) {
    return VS_OK;
  }
  return vs_fail(VS_ERR_DTYPE, "%s: %s %d (%s) is not supported, use f32 or bf16", kernel, what, dtype,
                 vs_dtype_name(dtype));
}

int vs_check_any_dtype(const char* kernel, const char* what, int dtype) {
  if (vs_dtype_size(dtype) > 0) {
    return VS_OK;
  }
  return vs_fail(VS_ERR_DTYPE, "%s: %s %d is not a vs_dtype, use f32, bf16, u8 or i32", kernel, what, dtype);
}

int vs_check_ptr(const char* kernel, const char* name, const void* ptr, int64_t count) {
  if (ptr != NULL || count == 0) {
    return VS_OK;
  }
  return vs_fail(VS_ERR_ARG, "%s: %s is NULL but must hold %" PRId64 " values", kernel, name, count);
}

int vs_check_flag(const char* kernel, const char* name, int value) {
  if (value == 0 || value == 1) {
    return VS_OK;
  }
  return vs_fail(VS_ERR_ARG, "%s: %s must be 0 or 1, got %d", kernel, name, value);
}

/* Copies the index-th space-separated word of `names` into out. */
static void dim_name(const char* names, int index, char* out, size_t out_len) {
  const char* p = names;
  for (int i = 0; i < index && *p; i++) {
    while (*p && *p != ' ') {
      p++;
    }
    while (*p == ' ') {
      p++;
    }
  }
  size_t len = 0;
  while (p[len] && p[len] != ' ') {
    len++;
  }
  if (len >= out_len) {
    len = out_len - 1;
  }
  memcpy(out, p, len);
  out[len] = '\0';
}

int vs_dims_(const char* kernel, int64_t* numel, const char* names, const int64_t* dims, int ndims) {
  int64_t product = 1;
  int any_zero = 0;
  for (int i = 0; i < ndims; i++) {
    if (dims[i] < 0) {
      char name[64];
      dim_name(names, i, name, sizeof name);
      return vs_fail(VS_ERR_ARG, "%s: %s must be >= 0, got %" PRId64, kernel, name, dims[i]);
    }
    if (dims[i] == 0) {
      any_zero = 1;
      continue;
    }
    if (__builtin_mul_overflow(product, dims[i], &product)) {
      return vs_fail(VS_ERR_ARG, "%s: the sizes (%s) multiply to more than 2^63 elements", kernel, names);
    }
  }
  if (numel != NULL) {
    *numel = any_zero ? 0 : product;
  }
  return VS_OK;
}

int vs_check_indices(const char* kernel, const int32_t* idx, int64_t count, int64_t cols, int64_t limit) {
  /* A serial scan: it is a small fraction of the work it guards, and stopping at the first bad entry
   * gives a deterministic message. */
  for (int64_t i = 0; i < count; i++) {
    if (idx[i] < 0 || idx[i] >= limit) {
      int64_t row = cols > 0 ? i / cols : 0;
      int64_t col = cols > 0 ? i % cols : i;
      return vs_fail(VS_ERR_ARG, "%s: idx[%" PRId64 ", %" PRId64 "] = %" PRId32 " is outside [0, %" PRId64 ")",
                     kernel, row, col, idx[i], limit);
    }
  }
  return VS_OK;
}
