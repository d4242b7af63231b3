// Force-included before every cuda/gpu source in the simulator build (g++ -include): the CUDA C++
// language extensions and device built-ins as host C++. Kernels run as fibers (scheduler.cpp), so the
// built-ins read the calling fiber's state and the synchronising ones switch fibers.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "vsim.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __restrict__ __restrict
#define __grid_constant__
#define threadIdx (::vsim::thread_idx())
#define blockIdx (::vsim::block_idx())
#define blockDim (::vsim::block_dim())
#define gridDim (::vsim::grid_dim())
#define warpSize 32

inline void __syncthreads() { vsim::syncthreads(); }

inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)vsim::warp_exchange("__syncwarp", mask, nullptr, 0); }

namespace vsim {
// Shuffles move any 4- or 8-byte value, as the CUDA overloads do: every lane of the mask deposits its
// value and reads the one of lane src(lane).
template <typename T, typename Src>
inline T shuffle(const char* op, unsigned mask, T v, Src src) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 4 or 8 bytes");
  uint32_t w[2] = {0, 0};
  memcpy(w, &v, sizeof(T));
  const uint32_t* all = warp_exchange(op, mask, w, 2);
  T out;
  memcpy(&out, all + src(lane_id()) * 16, sizeof(T));
  return out;
}
}  // namespace vsim

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return vsim::shuffle("__shfl_xor_sync", mask, v, [&](int lane) {
    const int src = lane ^ lane_mask;
    return (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane;  // outside the segment: own value
  });
}

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return vsim::shuffle("__shfl_sync", mask, v,
                       [&](int lane) { return (lane & ~(width - 1)) + (src_lane & (width - 1)); });
}

inline unsigned __ballot_sync(unsigned mask, int pred) {
  const uint32_t w = pred ? 1u : 0u;
  const uint32_t* all = vsim::warp_exchange("__ballot_sync", mask, &w, 1);
  unsigned out = 0;
  for (int l = 0; l < 32; ++l) {
    if ((mask >> l) & 1u) out |= (all[l * 16] & 1u) << l;
  }
  return out;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  return u;
}
inline int __float_as_int(float f) { return int(__float_as_uint(f)); }
inline float __int_as_float(int i) { return __uint_as_float(unsigned(i)); }

// Correctly rounded single operations (never contracted into an fma, as on the device).
inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;
  return r;
}
inline float __fadd_rn(float a, float b) {
  volatile float r = a + b;
  return r;
}
inline double __dmul_rn(double a, double b) {
  volatile double r = a * b;
  return r;
}

// Fast-math intrinsics: the host's correctly rounded functions, within the device's documented error
// (CUDA Programming Guide, "Intrinsic Functions": __expf 2 + 1.16|x| ulp, __logf 2^-21.41 absolute).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

template <typename T>
inline T __ldg(const T* p) {
  vsim::check_global(p, sizeof(T), alignof(T), "__ldg");
  return *p;
}

namespace vsim {
template <typename T>
inline T atomic_add_float(T* p, T v) {
  check_global(p, sizeof(T), sizeof(T), "atomicAdd");
  T old;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  T sum = old + v;
  while (!__atomic_compare_exchange(p, &old, &sum, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) sum = old + v;
  return old;
}
}  // namespace vsim
inline float atomicAdd(float* p, float v) { return vsim::atomic_add_float(p, v); }
inline double atomicAdd(double* p, double v) { return vsim::atomic_add_float(p, v); }
inline int atomicAdd(int* p, int v) {
  vsim::check_global(p, 4, 4, "atomicAdd");
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  vsim::check_global(p, 4, 4, "atomicAdd");
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

// CUDA's integer min and max overloads (the device math library has one per type pair).
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

inline size_t __cvta_generic_to_shared(const void* p) { return vsim::shared_address(p); }

namespace vsim {

// A kernel launch: `kernel<<<grid, block, smem, stream>>>(args)` is rewritten at build time into
// `vsim::launch(kernel, "kernel", grid, block, smem, stream)(args)`. The arguments are converted to the
// kernel's parameter types once, as the launch does, and every thread gets its own copy.
template <typename... P>
struct Launch {
  void (*fn)(P...);
  const char* expr;
  LaunchCfg cfg;

  template <typename... A>
  void operator()(A&&... a) const {
    std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
    struct Ctx {
      void (*fn)(P...);
      std::tuple<std::decay_t<P>...>* args;
    } ctx{fn, &args};
    auto body = [](void* c) {
      Ctx* x = static_cast<Ctx*>(c);
      std::tuple<std::decay_t<P>...> mine = *x->args;
      std::apply(x->fn, mine);
    };
    (void)run_kernel(reinterpret_cast<const void*>(fn), expr, cfg, body, &ctx);
  }
};

template <typename... P>
Launch<P...> launch(void (*fn)(P...), const char* expr, dim3 grid, dim3 block, size_t smem = 0,
                    cudaStream_t stream = nullptr) {
  return Launch<P...>{fn, expr, LaunchCfg{grid, block, smem, stream}};
}

// `__shared__ T name[N]` is rewritten into `T (&name)[N] = vsim::shared_var<T[N]>()` with a tag per
// declaration: one variable per block, poisoned with NaN bytes when the block starts, 16-byte aligned.
template <typename T>
inline T& shared_var(const void* tag) {
  return *static_cast<T*>(static_smem(tag, sizeof(T), alignof(T) > 16 ? alignof(T) : 16));
}

}  // namespace vsim

#include "ptx.h"
