// Token rows: gather/scatter by index, the sinusoid position table, mean and max over tokens.
#include "map.cuh"

namespace vsw {
namespace {

constexpr int kRowWarps = 8;

// ------------------------------------------------------------------------------------------------
// Gather / scatter as row copies. A row is moved in the widest unit that the row length and both base
// pointers allow (16 bytes for any dtype with a 16-byte multiple row), one warp per row. Indices outside
// [0, n) are skipped: the destination row keeps its contents rather than the kernel faulting.
// ------------------------------------------------------------------------------------------------

template <typename U>
__global__ void __launch_bounds__(kRowWarps * 32)
    gather_kernel(int64_t b, int64_t n_src, int64_t n_idx, int64_t units, const U* src, int src_shared,
                  const int32_t* idx, U* dst) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = b * n_idx;
  const int64_t warps_total = int64_t(gridDim.x) * kRowWarps;
  for (int64_t r = int64_t(blockIdx.x) * kRowWarps + (threadIdx.x >> 5); r < rows; r += warps_total) {
    const int64_t s = idx[r];
    if (s < 0 || s >= n_src) continue;
    const int64_t srow = src_shared ? s : (r / n_idx) * n_src + s;
    const U* from = src + srow * units;
    U* to = dst + r * units;
    for (int64_t u = lane; u < units; u += 32) to[u] = from[u];
  }
}

template <typename U>
__global__ void __launch_bounds__(kRowWarps * 32)
    scatter_copy_kernel(int64_t b, int64_t n_dst, int64_t n_idx, int64_t units, const U* src, const int32_t* idx,
                        U* dst) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = b * n_idx;
  const int64_t warps_total = int64_t(gridDim.x) * kRowWarps;
  for (int64_t r = int64_t(blockIdx.x) * kRowWarps + (threadIdx.x >> 5); r < rows; r += warps_total) {
    const int64_t d = idx[r];
    if (d < 0 || d >= n_dst) continue;
    const U* from = src + r * units;
    U* to = dst + ((r / n_idx) * n_dst + d) * units;
    for (int64_t u = lane; u < units; u += 32) to[u] = from[u];
  }
}

// dst row += src row, E values per step when VEC (c % E == 0 and aligned pointers).
template <typename T, int E, bool VEC>
__global__ void __launch_bounds__(kRowWarps * 32)
    scatter_add_kernel(int64_t b, int64_t n_dst, int64_t n_idx, int64_t c, const T* src, const int32_t* idx, T* dst) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = b * n_idx;
  const int64_t warps_total = int64_t(gridDim.x) * kRowWarps;
  for (int64_t r = int64_t(blockIdx.x) * kRowWarps + (threadIdx.x >> 5); r < rows; r += warps_total) {
    const int64_t d = idx[r];
    if (d < 0 || d >= n_dst) continue;
    const T* from = src + r * c;
    T* to = dst + ((r / n_idx) * n_dst + d) * c;
    if constexpr (VEC) {
      for (int64_t k = int64_t(lane) * E; k < c; k += 32 * E) {
        float a[E], s[E];
        load_pack<T, E>(to + k, a);
        load_pack<T, E>(from + k, s);
#pragma unroll
        for (int j = 0; j < E; ++j) a[j] += s[j];
        store_pack<T, E>(to + k, a);
      }
    } else {
      for (int64_t k = lane; k < c; k += 32) to[k] = from_f<T>(to_f(to[k]) + to_f(from[k]));
    }
  }
}

// The widest copy unit (16, 8, 4, 2 or 1 bytes) dividing the row length and both pointers.
int copy_unit(int64_t row_bytes, const void* a, const void* b) {
  const uintptr_t bits = uintptr_t(row_bytes) | reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b);
  for (int u = 16; u > 1; u >>= 1) {
    if ((bits & uintptr_t(u - 1)) == 0) return u;
  }
  return 1;
}

template <typename U>
void launch_gather(unsigned grid, cudaStream_t s, int64_t b, int64_t n_src, int64_t n_idx, int64_t row_bytes,
                   const void* src, int src_shared, const int32_t* idx, void* dst) {
  gather_kernel<U><<<grid, kRowWarps * 32, 0, s>>>(b, n_src, n_idx, row_bytes / int64_t(sizeof(U)),
                                                   static_cast<const U*>(src), src_shared, idx, static_cast<U*>(dst));
}

template <typename U>
void launch_scatter_copy(unsigned grid, cudaStream_t s, int64_t b, int64_t n_dst, int64_t n_idx, int64_t row_bytes,
                         const void* src, const int32_t* idx, void* dst) {
  scatter_copy_kernel<U><<<grid, kRowWarps * 32, 0, s>>>(b, n_dst, n_idx, row_bytes / int64_t(sizeof(U)),
                                                         static_cast<const U*>(src), idx, static_cast<U*>(dst));
}

template <typename T>
void launch_scatter_add(unsigned grid, cudaStream_t s, int64_t b, int64_t n_dst, int64_t n_idx, int64_t c,
                        const void* src, const int32_t* idx, void* dst) {
  constexpr int E = int(16 / sizeof(T));
  const T* sp = static_cast<const T*>(src);
  T* dp = static_cast<T*>(dst);
  if (c % E == 0 && aligned16(sp) && aligned16(dp)) {
    scatter_add_kernel<T, E, true><<<grid, kRowWarps * 32, 0, s>>>(b, n_dst, n_idx, c, sp, idx, dp);
  } else {
    scatter_add_kernel<T, E, false><<<grid, kRowWarps * 32, 0, s>>>(b, n_dst, n_idx, c, sp, idx, dp);
  }
}

// ------------------------------------------------------------------------------------------------
// Sinusoid table, in double and rounded once to the output type
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ T round_double(double v);
template <>
__device__ __forceinline__ float round_double<float>(double v) {
  return float(v);
}
template <>
__device__ __forceinline__ bf16 round_double<bf16>(double v) {
  return __double2bfloat16(v);  // one rounding, double straight to bf16 (not through float)
}

template <typename T>
__global__ void sinusoid_kernel(int64_t n_pos, int64_t d, T* out) {
  const int64_t total = n_pos * d;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t pos = e / d, j = e - pos * d;
    const double expo = double(2 * (j / 2)) / double(d);
    const double angle = double(pos) / pow(10000.0, expo);
    out[e] = round_double<T>((j & 1) ? cos(angle) : sin(angle));
  }
}

// ------------------------------------------------------------------------------------------------
// Mean over tokens: block (32 channels, 8 token lanes) per (sample, channel tile), fixed combine order.
// ------------------------------------------------------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(256) mean_tokens_kernel(int64_t n, int64_t c, const T* x, T* out) {
  __shared__ float red[8][33];
  const int64_t i = blockIdx.y;
  const int64_t ch = int64_t(blockIdx.x) * 32 + threadIdx.x;
  float acc = 0.0f;
  if (ch < c) {
    const T* base = x + i * n * c + ch;
    for (int64_t t = threadIdx.y; t < n; t += 8) acc += to_f(base[t * c]);
  }
  red[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    float s = 0.0f;
#pragma unroll
    for (int y = 0; y < 8; ++y) s += red[y][threadIdx.x];
    out[i * c + ch] = from_f<T>(s / float(n));
  }
}

// dx[i, t, :] (+)= dout[i, :] / n.
template <typename T, int E, bool VEC>
__global__ void __launch_bounds__(kMapThreads)
    mean_tokens_bwd_kernel(int64_t b, int64_t n, int64_t c, const T* dout, T* dx, int accumulate) {
  const int64_t total = b * n * c;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const float nf = float(n);
  if constexpr (VEC) {
    for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < total / E; p += stride) {
      const int64_t e = p * E;
      const int64_t row = e / c, ch = e - row * c, i = row / n;
      float g[E], o[E];
      load_pack<T, E>(dout + i * c + ch, g);
      if (accumulate) {
        load_pack<T, E>(dx + e, o);
#pragma unroll
        for (int j = 0; j < E; ++j) o[j] += g[j] / nf;
      } else {
#pragma unroll
        for (int j = 0; j < E; ++j) o[j] = g[j] / nf;
      }
      store_pack<T, E>(dx + e, o);
    }
  } else {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
      const int64_t row = e / c, ch = e - row * c, i = row / n;
      const float g = to_f(dout[i * c + ch]) / nf;
      dx[e] = from_f<T>(accumulate ? to_f(dx[e]) + g : g);
    }
  }
}


// ------------------------------------------------------------------------------------------------
// Max over tokens: the same tiling as the mean; each token lane keeps its first maximum and the lanes
// are combined in a fixed order, so ties go to the lowest token index and a NaN wins (as the host).
// ------------------------------------------------------------------------------------------------

// Whether (v, t) replaces the running (bv, bt): NaN first, then the larger value, then the lower token.
__device__ __forceinline__ bool max_better(float v, int32_t t, float bv, int32_t bt) {
  if (bv != bv) return v != v && t < bt;
  if (v != v) return true;
  return v > bv || (v == bv && t < bt);
}

template <typename T>
__global__ void __launch_bounds__(256) max_tokens_kernel(int64_t n, int64_t c, const T* x, T* out, int32_t* argmax) {
  __shared__ float red[8][33];
  __shared__ int32_t at[8][33];
  const int64_t i = blockIdx.y;
  const int64_t ch = int64_t(blockIdx.x) * 32 + threadIdx.x;
  float best = -INFINITY;
  int32_t bt = int32_t(n);  // no token yet: any real token beats it, even -inf
  if (ch < c) {
    const T* base = x + i * n * c + ch;
    for (int64_t t = threadIdx.y; t < n; t += 8) {
      const float v = to_f(base[t * c]);
      if (max_better(v, int32_t(t), best, bt)) {
        best = v;
        bt = int32_t(t);
      }
    }
  }
  red[threadIdx.y][threadIdx.x] = best;
  at[threadIdx.y][threadIdx.x] = bt;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
#pragma unroll
    for (int y = 1; y < 8; ++y) {
      if (max_better(red[y][threadIdx.x], at[y][threadIdx.x], best, bt)) {
        best = red[y][threadIdx.x];
        bt = at[y][threadIdx.x];
      }
    }
    out[i * c + ch] = from_f<T>(best);
    argmax[i * c + ch] = bt;
  }
}

// dx[i, t, ch] = dout[i, ch] where t = argmax[i, ch], else 0; accumulating adds into dx instead.
template <typename T>
__global__ void __launch_bounds__(kMapThreads) max_tokens_bwd_kernel(int64_t b, int64_t n, int64_t c, const T* dout,
                                                                     const int32_t* argmax, T* dx, int accumulate) {
  const int64_t total = b * n * c;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t row = e / c, ch = e - row * c, i = row / n, t = row - i * n;
    const bool hit = argmax[i * c + ch] == t;
    if (accumulate) {
      if (hit) dx[e] = from_f<T>(to_f(dx[e]) + to_f(dout[i * c + ch]));
    } else {
      dx[e] = hit ? dout[i * c + ch] : from_f<T>(0.0f);
    }
  }
}


// The checks every pooling entry point starts with: a float dtype and sizes >= 0.
int check_pool_sizes(const char* fn, int dtype, int64_t b, int64_t n, int64_t c) {
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "b", b));
  VSW_TRY(check_size(fn, "n", n));
  return check_size(fn, "c", c);
}

}  // namespace
}  // namespace vsw

using namespace vsw;

int vs_gather_rows(int dtype, int64_t b, int64_t n_src, int64_t n_idx, int64_t c, const void* src, int src_shared,
                   const int32_t* idx, void* dst, vs_stream stream) {
  static const char* fn = "vs_gather_rows";
  const int es = dtype_size(dtype);
  if (es == 0) return vs_fail(VS_ERR_DTYPE, "%s: unknown dtype %d", fn, dtype);
  VSW_TRY(check_size(fn, "b", b));
  VSW_TRY(check_size(fn, "n_src", n_src));
  VSW_TRY(check_size(fn, "n_idx", n_idx));
  VSW_TRY(check_size(fn, "c", c));
  if (b == 0 || n_idx == 0 || c == 0) return VS_OK;
  if (n_src == 0) return vs_fail(VS_ERR_ARG, "%s: n_src = 0 but %lld indices were given", fn, (long long)n_idx);
  VSW_TRY(check_ptr(fn, "src", src));
  VSW_TRY(check_ptr(fn, "idx", idx));
  VSW_TRY(check_ptr(fn, "dst", dst));
  const int64_t row_bytes = c * es;
  const unsigned grid = grid_for((b * n_idx + kRowWarps - 1) / kRowWarps, 1, 16);
  cudaStream_t s = as_stream(stream);
  switch (copy_unit(row_bytes, src, dst)) {
    case 16: launch_gather<uint4>(grid, s, b, n_src, n_idx, row_bytes, src, src_shared, idx, dst); break;
    case 8: launch_gather<uint2>(grid, s, b, n_src, n_idx, row_bytes, src, src_shared, idx, dst); break;
    case 4: launch_gather<uint32_t>(grid, s, b, n_src, n_idx, row_bytes, src, src_shared, idx, dst); break;
    case 2: launch_gather<uint16_t>(grid, s, b, n_src, n_idx, row_bytes, src, src_shared, idx, dst); break;
    default: launch_gather<uint8_t>(grid, s, b, n_src, n_idx, row_bytes, src, src_shared, idx, dst); break;
  }
  return vs_check_launch("vs_gather_rows (gather_kernel)");
}

int vs_scatter_rows(int dtype, int64_t b, int64_t n_dst, int64_t n_idx, int64_t c, const void* src,
                    const int32_t* idx, void* dst, int accumulate, vs_stream stream) {
  static const char* fn = "vs_scatter_rows";
  const int es = dtype_size(dtype);
  if (es == 0) return vs_fail(VS_ERR_DTYPE, "%s: unknown dtype %d", fn, dtype);
  if (accumulate && dtype != VS_F32 && dtype != VS_BF16) {
    return vs_fail(VS_ERR_DTYPE, "%s: accumulate needs f32 or bf16, got %s", fn, dtype_name(dtype));
  }
  VSW_TRY(check_size(fn, "b", b));
  VSW_TRY(check_size(fn, "n_dst", n_dst));
  VSW_TRY(check_size(fn, "n_idx", n_idx));
  VSW_TRY(check_size(fn, "c", c));
  if (b == 0 || n_idx == 0 || c == 0) return VS_OK;
  if (n_dst == 0) return vs_fail(VS_ERR_ARG, "%s: n_dst = 0 but %lld indices were given", fn, (long long)n_idx);
  VSW_TRY(check_ptr(fn, "src", src));
  VSW_TRY(check_ptr(fn, "idx", idx));
  VSW_TRY(check_ptr(fn, "dst", dst));
  const unsigned grid = grid_for((b * n_idx + kRowWarps - 1) / kRowWarps, 1, 16);
  cudaStream_t s = as_stream(stream);
  if (accumulate) {
    // Indices are distinct within a batch entry (ABI), so no two warps touch the same row.
    if (dtype == VS_BF16) {
      launch_scatter_add<bf16>(grid, s, b, n_dst, n_idx, c, src, idx, dst);
    } else {
      launch_scatter_add<float>(grid, s, b, n_dst, n_idx, c, src, idx, dst);
    }
    return vs_check_launch("vs_scatter_rows (scatter_add_kernel)");
  }
  const int64_t row_bytes = c * es;
  switch (copy_unit(row_bytes, src, dst)) {
    case 16: launch_scatter_copy<uint4>(grid, s, b, n_dst, n_idx, row_bytes, src, idx, dst); break;
    case 8: launch_scatter_copy<uint2>(grid, s, b, n_dst, n_idx, row_bytes, src, idx, dst); break;
    case 4: launch_scatter_copy<uint32_t>(grid, s, b, n_dst, n_idx, row_bytes, src, idx, dst); break;
    case 2: launch_scatter_copy<uint16_t>(grid, s, b, n_dst, n_idx, row_bytes, src, idx, dst); break;
    default: launch_scatter_copy<uint8_t>(grid, s, b, n_dst, n_idx, row_bytes, src, idx, dst); break;
  }
  return vs_check_launch("vs_scatter_rows (scatter_copy_kernel)");
}

int vs_sinusoid_table(int dtype, int64_t n_pos, int64_t d, void* out, vs_stream stream) {
  static const char* fn = "vs_sinusoid_table";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "n_pos", n_pos));
  VSW_TRY(check_size(fn, "d", d));
  if (n_pos == 0 || d == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "out", out));
  const unsigned grid = grid_for(n_pos * d, 256);
  if (dtype == VS_BF16) {
    sinusoid_kernel<bf16><<<grid, 256, 0, as_stream(stream)>>>(n_pos, d, static_cast<bf16*>(out));
  } else {
    sinusoid_kernel<float><<<grid, 256, 0, as_stream(stream)>>>(n_pos, d, static_cast<float*>(out));
  }
  return vs_check_launch("vs_sinusoid_table (sinusoid_kernel)");
}

int vs_mean_tokens_fwd(int dtype, int64_t b, int64_t n, int64_t c, const void* x, void* out, vs_stream stream) {
  static const char* fn = "vs_mean_tokens_fwd";
  VSW_TRY(check_pool_sizes(fn, dtype, b, n, c));
  if (b == 0 || c == 0) return VS_OK;
  if (n == 0) return vs_fail(VS_ERR_ARG, "%s: the mean over n = 0 tokens is undefined", fn);
  if (b > 65535) return vs_fail(VS_ERR_ARG, "%s: b = %lld exceeds 65535", fn, (long long)b);
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "out", out));
  const dim3 grid{unsigned((c + 31) / 32), unsigned(b), 1u};
  const dim3 block{32u, 8u, 1u};
  if (dtype == VS_BF16) {
    mean_tokens_kernel<bf16><<<grid, block, 0, as_stream(stream)>>>(n, c, static_cast<const bf16*>(x),
                                                                   static_cast<bf16*>(out));
  } else {
    mean_tokens_kernel<float><<<grid, block, 0, as_stream(stream)>>>(n, c, static_cast<const float*>(x),
                                                                    static_cast<float*>(out));
  }
  return vs_check_launch("vs_mean_tokens_fwd (mean_tokens_kernel)");
}

int vs_mean_tokens_bwd(int dtype, int64_t b, int64_t n, int64_t c, const void* dout, void* dx, int accumulate,
                       vs_stream stream) {
  static const char* fn = "vs_mean_tokens_bwd";
  VSW_TRY(check_pool_sizes(fn, dtype, b, n, c));
  if (b == 0 || n == 0 || c == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "dout", dout));
  VSW_TRY(check_ptr(fn, "dx", dx));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int E = int(16 / sizeof(T));
    const T* g = static_cast<const T*>(dout);
    T* o = static_cast<T*>(dx);
    const int64_t total = b * n * c;
    cudaStream_t s = as_stream(stream);
    if (c % E == 0 && aligned16(g) && aligned16(o)) {
      mean_tokens_bwd_kernel<T, E, true><<<grid_for(total / E, kMapThreads), kMapThreads, 0, s>>>(b, n, c, g, o,
                                                                                                 accumulate);
    } else {
      mean_tokens_bwd_kernel<T, E, false><<<grid_for(total, kMapThreads), kMapThreads, 0, s>>>(b, n, c, g, o,
                                                                                              accumulate);
    }
    return vs_check_launch("vs_mean_tokens_bwd (mean_tokens_bwd_kernel)");
  });
}

int vs_max_tokens_fwd(int dtype, int64_t b, int64_t n, int64_t c, const void* x, void* out, int32_t* argmax,
                      vs_stream stream) {
  static const char* fn = "vs_max_tokens_fwd";
  VSW_TRY(check_pool_sizes(fn, dtype, b, n, c));
  if (b == 0 || c == 0) return VS_OK;
  if (n == 0) return vs_fail(VS_ERR_ARG, "%s: the max over n = 0 tokens is undefined", fn);
  if (n > INT32_MAX) return vs_fail(VS_ERR_ARG, "%s: n = %lld does not fit the i32 argmax", fn, (long long)n);
  if (b > 65535) return vs_fail(VS_ERR_ARG, "%s: b = %lld exceeds 65535", fn, (long long)b);
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "out", out));
  VSW_TRY(check_ptr(fn, "argmax", argmax));
  const dim3 grid{unsigned((c + 31) / 32), unsigned(b), 1u};
  const dim3 block{32u, 8u, 1u};
  if (dtype == VS_BF16) {
    max_tokens_kernel<bf16><<<grid, block, 0, as_stream(stream)>>>(n, c, static_cast<const bf16*>(x),
                                                                  static_cast<bf16*>(out), argmax);
  } else {
    max_tokens_kernel<float><<<grid, block, 0, as_stream(stream)>>>(n, c, static_cast<const float*>(x),
                                                                   static_cast<float*>(out), argmax);
  }
  return vs_check_launch("vs_max_tokens_fwd (max_tokens_kernel)");
}

int vs_max_tokens_bwd(int dtype, int64_t b, int64_t n, int64_t c, const void* dout, const int32_t* argmax, void* dx,
                      int accumulate, vs_stream stream) {
  static const char* fn = "vs_max_tokens_bwd";
  VSW_TRY(check_pool_sizes(fn, dtype, b, n, c));
  if (b == 0 || n == 0 || c == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "dout", dout));
  VSW_TRY(check_ptr(fn, "argmax", argmax));
  VSW_TRY(check_ptr(fn, "dx", dx));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = b * n * c;
    max_tokens_bwd_kernel<T><<<grid_for(total, kMapThreads), kMapThreads, 0, as_stream(stream)>>>(
        b, n, c, static_cast<const T*>(dout), argmax, static_cast<T*>(dx), accumulate);
    return vs_check_launch("vs_max_tokens_bwd (max_tokens_bwd_kernel)");
  });
}
