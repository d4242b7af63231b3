// Elementwise map kernels shared by the elementwise, loss, token and optimiser sources: one pass over
// memory with 16-byte loads and stores where every pointer allows it, a scalar loop for the rest.
#pragma once

#include "common.cuh"

namespace vsw {

constexpr int kMapThreads = 256;

// out[i] = op(a[i]). E elements per thread per step on the vector path (the width of 16 bytes of the
// narrowest type); VEC false is the scalar path for unaligned pointers.
template <typename TO, typename TA, typename Op, int E, bool VEC>
__global__ void __launch_bounds__(kMapThreads) map1_kernel(int64_t n, const TA* a, TO* out, Op op) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t nv = n / E;
    for (int64_t i = t; i < nv; i += stride) {
      float va[E], vo[E];
      load_pack<TA, E>(a + i * E, va);
#pragma unroll
      for (int j = 0; j < E; ++j) vo[j] = op(va[j]);
      store_pack<TO, E>(out + i * E, vo);
    }
    done = nv * E;
  }
  for (int64_t i = done + t; i < n; i += stride) out[i] = from_f<TO>(op(to_f(a[i])));
}

// out[i] = op(a[i], b[i]); out may alias a or b (each element is read before it is written, by the same
// thread).
template <typename TO, typename TA, typename TB, typename Op, int E, bool VEC>
__global__ void __launch_bounds__(kMapThreads) map2_kernel(int64_t n, const TA* a, const TB* b, TO* out, Op op) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t nv = n / E;
    for (int64_t i = t; i < nv; i += stride) {
      float va[E], vb[E], vo[E];
      load_pack<TA, E>(a + i * E, va);
      load_pack<TB, E>(b + i * E, vb);
#pragma unroll
      for (int j = 0; j < E; ++j) vo[j] = op(va[j], vb[j]);
      store_pack<TO, E>(out + i * E, vo);
    }
    done = nv * E;
  }
  for (int64_t i = done + t; i < n; i += stride) out[i] = from_f<TO>(op(to_f(a[i]), to_f(b[i])));
}

template <typename TO, typename TA, typename Op>
int launch_map1(const char* kernel, int64_t n, const TA* a, TO* out, Op op, cudaStream_t stream) {
  if (n <= 0) return VS_OK;
  constexpr int E = PackWidth<TO, TA>::value;
  if (aligned16(a) && aligned16(out) && n >= E) {
    map1_kernel<TO, TA, Op, E, true><<<grid_for(n / E, kMapThreads), kMapThreads, 0, stream>>>(n, a, out, op);
  } else {
    map1_kernel<TO, TA, Op, E, false><<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(n, a, out, op);
  }
  return vs_check_launch(kernel);
}

template <typename TO, typename TA, typename TB, typename Op>
int launch_map2(const char* kernel, int64_t n, const TA* a, const TB* b, TO* out, Op op, cudaStream_t stream) {
  if (n <= 0) return VS_OK;
  constexpr int E = PackWidth<TO, TA, TB>::value;
  if (aligned16(a) && aligned16(b) && aligned16(out) && n >= E) {
    map2_kernel<TO, TA, TB, Op, E, true><<<grid_for(n / E, kMapThreads), kMapThreads, 0, stream>>>(n, a, b, out, op);
  } else {
    map2_kernel<TO, TA, TB, Op, E, false><<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(n, a, b, out, op);
  }
  return vs_check_launch(kernel);
}

// Calls f(T{}) with T the C++ type of a float dtype (f32 or bf16); the caller has checked the dtype.
template <typename F>
int with_float_type(int dtype, F&& f) {
  if (dtype == VS_BF16) return f(bf16{});
  return f(float{});
}

}  // namespace vsw
