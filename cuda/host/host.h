/*
 * Internal helpers shared by the host build (libvswift_host.so): error recording, argument checks,
 * bf16 conversion, per-thread scratch memory and the OpenMP team size. Not part of the ABI.
 */
#ifndef VSWIFT_HOST_H
#define VSWIFT_HOST_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../vswift.h"

/* Internal helpers stay out of the dynamic symbol table: the library exports exactly the ABI. */
#define VS_INTERNAL __attribute__((visibility("hidden")))

/* ---------------------------------------------------------------------------------------------------
 * Errors and argument checks. Every check returns VS_OK or the failing status, with the message
 * already recorded, so that entry points can chain them with VS_TRY.
 * ------------------------------------------------------------------------------------------------- */

/* Records a printf-style message for vs_last_error() on this thread and returns `status`. */
VS_INTERNAL int vs_fail(int status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define VS_TRY(expr)                  \
  do {                                \
    int vs_try_status_ = (expr);      \
    if (vs_try_status_ != VS_OK) {    \
      return vs_try_status_;          \
    }                                 \
  } while (0)

/* "f32", "bf16", "u8", "i32" or "unknown". */
VS_INTERNAL const char* vs_dtype_name(int dtype);
/* Bytes per element, 0 for an unknown dtype. */
VS_INTERNAL int64_t vs_dtype_size(int dtype);

/* Fails with VS_ERR_DTYPE unless `dtype` (named `what` in the message) is f32 or bf16. */
VS_INTERNAL int vs_check_float(const char* kernel, const char* what, int dtype);
/* Fails with VS_ERR_DTYPE unless `dtype` is one of the four vs_dtype values. */
VS_INTERNAL int vs_check_any_dtype(const char* kernel, const char* what, int dtype);
/* A tensor pointer may be NULL only when the tensor is empty, because vs_malloc(0) yields NULL. */
VS_INTERNAL int vs_check_ptr(const char* kernel, const char* name, const void* ptr, int64_t count);
/* Fails unless `value` is 0 or 1. */
VS_INTERNAL int vs_check_flag(const char* kernel, const char* name, int value);

/* Checks that every size is >= 0 and that the product of the non-zero sizes fits in int64 (so any
 * sub-product used for indexing fits too); `names` lists the sizes separated by spaces. Writes the
 * product of all sizes to *numel when numel is not NULL. */
VS_INTERNAL int vs_dims_(const char* kernel, int64_t* numel, const char* names, const int64_t* dims, int ndims);
#define VS_DIMS(kernel, numel, names, ...)                         \
  vs_dims_((kernel), (numel), (names), (const int64_t[]){__VA_ARGS__}, \
           (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* Checks that idx[i] is in [0, limit) for all i in [0, count) and names the first entry that is not,
 * as idx[row, col] with `cols` entries per row. */
VS_INTERNAL int vs_check_indices(const char* kernel, const int32_t* idx, int64_t count, int64_t cols, int64_t limit);

/* ---------------------------------------------------------------------------------------------------
 * bf16: the upper 16 bits of an IEEE binary32.
 * ------------------------------------------------------------------------------------------------- */

static inline float vs_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Round to nearest, ties to even. NaN is kept a quiet NaN with its sign: truncating a NaN whose
 * payload sits only in the low half would otherwise turn it into an infinity. */
static inline uint16_t vs_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return (uint16_t)((u >> 16) | 0x0040u);
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* A double rounded once to bf16. Going through f32 can round twice: the f32 step may land exactly on a
 * bf16 halfway point that v itself is not on. Nudging that f32 one ulp towards v makes the second
 * rounding go the way v would have gone. */
static inline uint16_t vs_f64_to_bf16(double v) {
  float f = (float)v;
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0xffffu) == 0x8000u && (double)f != v && v == v) {
    u = fabs(v) > fabs((double)f) ? u + 1u : u - 1u;
    memcpy(&f, &u, sizeof f);
  }
  return vs_f32_to_bf16(f);
}

/* Element i of a f32 or bf16 tensor, as f32. The dtype test is loop invariant at every call site,
 * so the compiler unswitches the loops that use these. */
static inline float vs_load(int dtype, const void* p, int64_t i) {
  if (dtype == VS_F32) {
    return ((const float*)p)[i];
  }
  return vs_bf16_to_f32(((const uint16_t*)p)[i]);
}

static inline void vs_store(int dtype, void* p, int64_t i, float v) {
  if (dtype == VS_F32) {
    ((float*)p)[i] = v;
  } else {
    ((uint16_t*)p)[i] = vs_f32_to_bf16(v);
  }
}

/* Stores a value computed in double, rounded once to the dtype. */
static inline void vs_store_d(int dtype, void* p, int64_t i, double v) {
  if (dtype == VS_F32) {
    ((float*)p)[i] = (float)v;
  } else {
    ((uint16_t*)p)[i] = vs_f64_to_bf16(v);
  }
}

/* dst[i] = src[i] as f32 for a f32 or bf16 tensor, in parallel. */
VS_INTERNAL void vs_to_f32(int dtype, const void* src, float* dst, int64_t n);

/* ---------------------------------------------------------------------------------------------------
 * GELU, exact erf form, and the vectorisable exp: fmath.h.
 * ------------------------------------------------------------------------------------------------- */

#include "fmath.h"

/* sum a[i] * b[i] in double. Eight independent accumulators let the compiler vectorise without
 * reassociating a single running sum, which strict IEEE semantics would forbid. */
static inline double vs_dot(const float* a, const float* b, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; l++) {
      acc[l] += (double)a[i + l] * (double)b[i + l];
    }
  }
  double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; i++) {
    s += (double)a[i] * (double)b[i];
  }
  return s;
}

/* ---------------------------------------------------------------------------------------------------
 * Scratch memory: per-thread growable buffers, kept for the life of the thread so that a training
 * step does not go back to the system allocator. The caller's slots are used outside parallel regions,
 * the worker slots inside them (the calling thread is also worker 0, hence separate slots).
 * ------------------------------------------------------------------------------------------------- */

enum {
  VS_SCRATCH_CALLER0 = 0,
  VS_SCRATCH_CALLER1,
  VS_SCRATCH_CALLER2,
  VS_SCRATCH_CALLER3,
  VS_SCRATCH_WORKER0,
  VS_SCRATCH_WORKER1,
  VS_SCRATCH_WORKER2,
  VS_SCRATCH_SLOTS
};

/* A 64-byte aligned buffer of at least `bytes` bytes owned by this thread, or NULL when the allocation
 * fails. The contents are undefined; the pointer stays valid until the same slot is asked for again on
 * this thread. */
VS_INTERNAL void* vs_scratch(int slot, int64_t bytes);

/* Fails with VS_ERR_NOMEM naming the kernel and the size. */
VS_INTERNAL int vs_fail_nomem(const char* kernel, int64_t bytes);

/* ---------------------------------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------------------------------- */

/* Threads for a parallel region doing about `work` cheap operations: 1 for small jobs, where waking a
 * team costs more than it saves, else the count chosen with vs_set_threads. It is passed through
 * num_threads() rather than relying on omp_set_num_threads, whose setting belongs to the thread that
 * made the call, while FFI calls may arrive on any thread. */
VS_INTERNAL int vs_team(int64_t work);

/* Rows per block in reductions that must give the same bits whatever the thread count: partial sums
 * are formed per fixed block and combined in block order. */
#define VS_REDUCE_BLOCK 4096

#endif /* VSWIFT_HOST_H */
