// Deterministic full reductions to a device scalar: pass 1 writes one partial per block (fixed grid, fixed
// in-block order), pass 2 adds the partials in block order in double. No float atomics, so a loss or a
// norm repeats bit for bit from run to run on the same device.
#pragma once

#include "map.cuh"

namespace vsw {

constexpr int kReduceThreads = 256;
constexpr int kReduceMaxBlocks = 1024;

// partial[blockIdx.x] = sum over this block's share of i of op(a[i], b[i]) (b ignored when B is false).
template <typename TA, bool B, typename Op, int E, bool VEC>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_partial_kernel(int64_t n, const TA* a, const float* b, Op op, float* partial) {
  __shared__ float red[32];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  float acc = 0.0f;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t nv = n / E;
    for (int64_t i = t; i < nv; i += stride) {
      float va[E], vb[E];
      load_pack<TA, E>(a + i * E, va);
      if constexpr (B) {
        load_pack<float, E>(b + i * E, vb);
      } else {
#pragma unroll
        for (int j = 0; j < E; ++j) vb[j] = 0.0f;
      }
#pragma unroll
      for (int j = 0; j < E; ++j) acc += op(va[j], vb[j]);
    }
    done = nv * E;
  }
  for (int64_t i = done + t; i < n; i += stride) acc += op(to_f(a[i]), B ? b[i] : 0.0f);
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// out[0] = fin(sum of partial[0 .. parts)), summed in double in a fixed order by one block.
template <typename Fin>
__global__ void __launch_bounds__(kReduceThreads) reduce_final_kernel(int64_t parts, const float* partial, Fin fin,
                                                                      float* out) {
  __shared__ double red[32];
  double acc = 0.0;
  // Each thread takes a contiguous run, so the order of additions is fixed by `parts` alone.
  const int64_t per = (parts + blockDim.x - 1) / blockDim.x;
  const int64_t begin = int64_t(threadIdx.x) * per;
  const int64_t end = begin + per < parts ? begin + per : parts;
  for (int64_t i = begin; i < end; ++i) acc += double(partial[i]);
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) out[0] = fin(acc);
}

// Reduces op over n elements into out[0] = fin(sum). `scratch` holds at least kReduceMaxBlocks floats.
template <typename TA, bool B, typename Op, typename Fin>
int reduce_to_scalar(const char* fn, int64_t n, const TA* a, const float* b, Op op, Fin fin, float* scratch,
                     float* out, cudaStream_t stream) {
  constexpr int E = PackWidth<TA, float>::value;
  const bool vec = aligned16(a) && (!B || aligned16(b)) && n >= E;
  unsigned grid = grid_for(vec ? n / E : n, kReduceThreads, 4);
  if (grid > unsigned(kReduceMaxBlocks)) grid = kReduceMaxBlocks;
  if (vec) {
    reduce_partial_kernel<TA, B, Op, E, true><<<grid, kReduceThreads, 0, stream>>>(n, a, b, op, scratch);
  } else {
    reduce_partial_kernel<TA, B, Op, E, false><<<grid, kReduceThreads, 0, stream>>>(n, a, b, op, scratch);
  }
  VSW_TRY(vs_check_launch(fn));
  reduce_final_kernel<Fin><<<1, kReduceThreads, 0, stream>>>(int64_t(grid), scratch, fin, out);
  return vs_check_launch(fn);
}

}  // namespace vsw
