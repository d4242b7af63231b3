// Fine-tuning augmentation on a batch: mixup, CutMix (partner = the batch reversed) and random erasing with
// counter-based noise. One thread handles both samples of a pair, reading both before writing either, so the
// kernels work in place. Products and sums are rounded one by one (no FMA contraction), as the host build
// computes them, so mixup gives the same bits in both builds.
#include <inttypes.h>

#include "common.cuh"

namespace vsw {
namespace {

constexpr int kMixThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kMixThreads)
    mix_kernel(int64_t b, int64_t inner, float lam, float mu, T* x) {
  const int64_t pairs = b / 2;
  const int64_t items = pairs * inner;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < items; e += stride) {
    const int64_t i = e / inner, j = e % inner;
    T* p = x + i * inner + j;
    T* q = x + (b - 1 - i) * inner + j;
    const float a = to_f(*p), c = to_f(*q);
    *p = from_f<T>(__fadd_rn(__fmul_rn(lam, a), __fmul_rn(mu, c)));
    *q = from_f<T>(__fadd_rn(__fmul_rn(lam, c), __fmul_rn(mu, a)));
  }
}

template <typename T>
__global__ void __launch_bounds__(kMixThreads)
    cutmix_kernel(int64_t b, int64_t planes, int64_t h, int64_t w, int64_t y0, int64_t x0, int64_t rows,
                  int64_t cols, T* x) {
  const int64_t pairs = b / 2;
  const int64_t items = pairs * planes * rows * cols;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t sample = planes * h * w;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < items; e += stride) {
    const int64_t q = e % cols;
    const int64_t r = (e / cols) % rows;
    const int64_t pl = (e / (cols * rows)) % planes;
    const int64_t i = e / (cols * rows * planes);
    const int64_t off = (pl * h + y0 + r) * w + x0 + q;
    T* a = x + i * sample + off;
    T* c = x + (b - 1 - i) * sample + off;
    const T va = *a;
    *a = *c;
    *c = va;
  }
}

__device__ __forceinline__ uint32_t fmix32(uint32_t v) {
  v ^= v >> 16;
  v *= 0x85ebca6bu;
  v ^= v >> 13;
  v *= 0xc2b2ae35u;
  v ^= v >> 16;
  return v;
}

__device__ __forceinline__ uint32_t noise_key(uint32_t seed, uint32_t k) { return fmix32(seed ^ fmix32(k + 0x9e3779b9u)); }

template <typename T>
__global__ void __launch_bounds__(kMixThreads)
    erase_kernel(int64_t planes, int64_t h, int64_t w, int64_t y0, int64_t x0, int64_t eh, int64_t ew,
                 uint32_t seed, T* x) {
  const int64_t per = eh * ew;
  const int64_t items = planes * per;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const double two_pi = 6.28318530717958647692;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < items; e += stride) {
    const int64_t pl = e / per;
    const int64_t r = (e % per) / ew;
    const int64_t q = e % ew;
    const uint32_t k2 = uint32_t(2 * e);
    const double u1 = __dmul_rn(double(noise_key(seed, k2)) + 0.5, 1.0 / 4294967296.0);
    const double u2 = __dmul_rn(double(noise_key(seed, k2 + 1u)), 1.0 / 4294967296.0);
    const double z = __dmul_rn(sqrt(__dmul_rn(-2.0, log(u1))), cos(__dmul_rn(two_pi, u2)));
    x[(pl * h + y0 + r) * w + x0 + q] = from_f<T>(float(z));
  }
}

}  // namespace
}  // namespace vsw

extern "C" int vs_mix_batch(int dtype, int64_t b, int64_t inner, float lam, void* x, vs_stream stream) {
  using namespace vsw;
  static const char* fn = "vs_mix_batch";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "b", b));
  VSW_TRY(check_size(fn, "inner", inner));
  if (!(lam >= 0.0f && lam <= 1.0f)) {
    return vs_fail(VS_ERR_ARG, "%s: lam must be in [0, 1], got %g", fn, double(lam));
  }
  const int64_t items = (b / 2) * inner;
  if (items == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  const unsigned grid = grid_for(items, kMixThreads);
  const float mu = 1.0f - lam;
  if (dtype == VS_F32) {
    mix_kernel<float><<<grid, kMixThreads, 0, as_stream(stream)>>>(b, inner, lam, mu, static_cast<float*>(x));
  } else {
    mix_kernel<bf16><<<grid, kMixThreads, 0, as_stream(stream)>>>(b, inner, lam, mu, static_cast<bf16*>(x));
  }
  return vs_check_launch(fn);
}

extern "C" int vs_cutmix_batch(int dtype, int64_t b, int64_t planes, int64_t h, int64_t w, int64_t y0, int64_t y1,
                               int64_t x0, int64_t x1, void* x, vs_stream stream) {
  using namespace vsw;
  static const char* fn = "vs_cutmix_batch";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "b", b));
  VSW_TRY(check_size(fn, "planes", planes));
  VSW_TRY(check_size(fn, "h", h));
  VSW_TRY(check_size(fn, "w", w));
  if (!(0 <= y0 && y0 <= y1 && y1 <= h && 0 <= x0 && x0 <= x1 && x1 <= w)) {
    return vs_fail(VS_ERR_ARG,
                   "%s: the box rows [%" PRId64 ", %" PRId64 ") x columns [%" PRId64 ", %" PRId64
                   ") must lie inside the %" PRId64 " x %" PRId64 " plane",
                   fn, y0, y1, x0, x1, h, w);
  }
  const int64_t items = (b / 2) * planes * (y1 - y0) * (x1 - x0);
  if (items == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  const unsigned grid = grid_for(items, kMixThreads);
  if (dtype == VS_F32) {
    cutmix_kernel<float><<<grid, kMixThreads, 0, as_stream(stream)>>>(b, planes, h, w, y0, x0, y1 - y0, x1 - x0,
                                                                      static_cast<float*>(x));
  } else {
    cutmix_kernel<bf16><<<grid, kMixThreads, 0, as_stream(stream)>>>(b, planes, h, w, y0, x0, y1 - y0, x1 - x0,
                                                                     static_cast<bf16*>(x));
  }
  return vs_check_launch(fn);
}

extern "C" int vs_random_erase(int dtype, int64_t c, int64_t t, int64_t h, int64_t w, int64_t y0, int64_t x0,
                               int64_t eh, int64_t ew, uint32_t seed, void* x, vs_stream stream) {
  using namespace vsw;
  static const char* fn = "vs_random_erase";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "c", c));
  VSW_TRY(check_size(fn, "t", t));
  VSW_TRY(check_size(fn, "h", h));
  VSW_TRY(check_size(fn, "w", w));
  VSW_TRY(check_size(fn, "eh", eh));
  VSW_TRY(check_size(fn, "ew", ew));
  if (!(y0 >= 0 && x0 >= 0 && y0 + eh <= h && x0 + ew <= w)) {
    return vs_fail(VS_ERR_ARG,
                   "%s: the box at (x0 %" PRId64 ", y0 %" PRId64 ") of %" PRId64 " x %" PRId64
                   " must lie inside the %" PRId64 " x %" PRId64 " frame",
                   fn, x0, y0, ew, eh, w, h);
  }
  const int64_t items = c * t * eh * ew;
  if (items > int64_t(0x7fffffff)) {
    return vs_fail(VS_ERR_ARG, "%s: %" PRId64 " erased values exceed the 2^31 the noise counter covers", fn, items);
  }
  if (items == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  const unsigned grid = grid_for(items, kMixThreads);
  if (dtype == VS_F32) {
    erase_kernel<float><<<grid, kMixThreads, 0, as_stream(stream)>>>(c * t, h, w, y0, x0, eh, ew, seed,
                                                                     static_cast<float*>(x));
  } else {
    erase_kernel<bf16><<<grid, kMixThreads, 0, as_stream(stream)>>>(c * t, h, w, y0, x0, eh, ew, seed,
                                                                    static_cast<bf16*>(x));
  }
  return vs_check_launch(fn);
}
