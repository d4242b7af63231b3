/* Fine-tuning augmentation on a batch: mixup, CutMix (partner = the batch reversed) and random erasing with
 * counter-based noise. Pairs (i, b - 1 - i) are handled by one iteration, which reads both samples before
 * writing either, so the kernels work in place. */
#include <inttypes.h>

#include "host.h"

int vs_mix_batch(int dtype, int64_t b, int64_t inner, float lam, void* x, vs_stream stream) {
  static const char* k = "vs_mix_batch";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  int64_t n = 0;
  VS_TRY(VS_DIMS(k, &n, "b inner", b, inner));
  VS_TRY(vs_check_ptr(k, "x", x, n));
  if (!(lam >= 0.0f && lam <= 1.0f)) {
    return vs_fail(VS_ERR_ARG, "%s: lam must be in [0, 1], got %g", k, (double)lam);
  }
  const int64_t pairs = b / 2;
  const float mu = 1.0f - lam;
#pragma omp parallel for collapse(2) schedule(static) num_threads(vs_team(n))
  for (int64_t i = 0; i < pairs; i++) {
    for (int64_t j = 0; j < inner; j++) {
      const int64_t p = i * inner + j;
      const int64_t q = (b - 1 - i) * inner + j;
      const float a = vs_load(dtype, x, p);
      const float c = vs_load(dtype, x, q);
      vs_store(dtype, x, p, lam * a + mu * c);
      vs_store(dtype, x, q, lam * c + mu * a);
    }
  }
  return VS_OK;
}

/* Swaps `count` elements of the dtype between two places of the same buffer. */
static void swap_run(int64_t esize, uint8_t* p, uint8_t* q, int64_t count) {
  uint8_t tmp[256];
  int64_t bytes = count * esize;
  while (bytes > 0) {
    const int64_t chunk = bytes < (int64_t)sizeof tmp ? bytes : (int64_t)sizeof tmp;
    memcpy(tmp, p, (size_t)chunk);
    memcpy(p, q, (size_t)chunk);
    memcpy(q, tmp, (size_t)chunk);
    p += chunk;
    q += chunk;
    bytes -= chunk;
  }
}

int vs_cutmix_batch(int dtype, int64_t b, int64_t planes, int64_t h, int64_t w, int64_t y0, int64_t y1,
                    int64_t x0, int64_t x1, void* x, vs_stream stream) {
  static const char* k = "vs_cutmix_batch";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  int64_t n = 0;
  VS_TRY(VS_DIMS(k, &n, "b planes h w", b, planes, h, w));
  VS_TRY(vs_check_ptr(k, "x", x, n));
  if (!(0 <= y0 && y0 <= y1 && y1 <= h && 0 <= x0 && x0 <= x1 && x1 <= w)) {
    return vs_fail(VS_ERR_ARG,
                   "%s: the box rows [%" PRId64 ", %" PRId64 ") x columns [%" PRId64 ", %" PRId64
                   ") must lie inside the %" PRId64 " x %" PRId64 " plane",
                   k, y0, y1, x0, x1, h, w);
  }
  const int64_t pairs = b / 2;
  const int64_t rows = y1 - y0;
  const int64_t cols = x1 - x0;
  if (pairs == 0 || rows == 0 || cols == 0) {
    return VS_OK;
  }
  const int64_t esize = vs_dtype_size(dtype);
  uint8_t* base = (uint8_t*)x;
  const int64_t sample = planes * h * w;
#pragma omp parallel for collapse(3) schedule(static) num_threads(vs_team(pairs * planes * rows * cols))
  for (int64_t i = 0; i < pairs; i++) {
    for (int64_t pl = 0; pl < planes; pl++) {
      for (int64_t r = 0; r < rows; r++) {
        const int64_t off = (pl * h + y0 + r) * w + x0;
        swap_run(esize, base + (i * sample + off) * esize, base + ((b - 1 - i) * sample + off) * esize, cols);
      }
    }
  }
  return VS_OK;
}

static inline uint32_t fmix32(uint32_t v) {
  v ^= v >> 16;
  v *= 0x85ebca6bu;
  v ^= v >> 13;
  v *= 0xc2b2ae35u;
  v ^= v >> 16;
  return v;
}

static inline uint32_t noise_key(uint32_t seed, uint32_t k) {
  return fmix32(seed ^ fmix32(k + 0x9e3779b9u));
}

int vs_random_erase(int dtype, int64_t c, int64_t t, int64_t h, int64_t w, int64_t y0, int64_t x0,
                    int64_t eh, int64_t ew, uint32_t seed, void* x, vs_stream stream) {
  static const char* k = "vs_random_erase";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  int64_t n = 0;
  VS_TRY(VS_DIMS(k, &n, "c t h w", c, t, h, w));
  VS_TRY(VS_DIMS(k, NULL, "eh ew", eh, ew));
  VS_TRY(vs_check_ptr(k, "x", x, n));
  if (!(y0 >= 0 && x0 >= 0 && y0 + eh <= h && x0 + ew <= w)) {
    return vs_fail(VS_ERR_ARG,
                   "%s: the box at (x0 %" PRId64 ", y0 %" PRId64 ") of %" PRId64 " x %" PRId64
                   " must lie inside the %" PRId64 " x %" PRId64 " frame",
                   k, x0, y0, ew, eh, w, h);
  }
  const int64_t planes = c * t;
  const int64_t per = eh * ew;
  /* The element counter is 32 bits wide (2e + 1 must fit), far more than a box of a clip holds. */
  if (planes * per > (int64_t)0x7fffffff) {
    return vs_fail(VS_ERR_ARG, "%s: %" PRId64 " erased values exceed the 2^31 the noise counter covers", k,
                   planes * per);
  }
  const double two_pi = 6.28318530717958647692;
#pragma omp parallel for schedule(static) num_threads(vs_team(planes * per * 8))
  for (int64_t e = 0; e < planes * per; e++) {
    const int64_t pl = e / per;
    const int64_t r = (e % per) / ew;
    const int64_t q = e % ew;
    const uint32_t k2 = (uint32_t)(2 * e);
    const double u1 = ((double)noise_key(seed, k2) + 0.5) * (1.0 / 4294967296.0);
    const double u2 = (double)noise_key(seed, k2 + 1u) * (1.0 / 4294967296.0);
    const double z = sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
    /* Rounded to f32 first (then to bf16), as the CUDA build does. */
    vs_store(dtype, x, (pl * h + y0 + r) * w + x0 + q, (float)z);
  }
  return VS_OK;
}
