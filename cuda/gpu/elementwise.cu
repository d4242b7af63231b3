// Elementwise kernels and column sums: casts, fill, add, axpby, broadcast add, row scaling, exact GELU.
#include <string.h>

#include "map.cuh"

namespace vsw {
namespace {

// ------------------------------------------------------------------------------------------------
// Functors (f32 arithmetic on loaded values)
// ------------------------------------------------------------------------------------------------

struct Identity {
  __device__ float operator()(float x) const { return x; }
};
struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Scale {
  float alpha;
  __device__ float operator()(float x) const { return alpha * x; }
};
struct Axpby {
  float alpha, beta;
  __device__ float operator()(float x, float y) const { return alpha * x + beta * y; }
};
struct Gelu {
  __device__ float operator()(float x) const { return gelu_exact(x); }
};
struct GeluGrad {
  __device__ float operator()(float x, float dy) const { return dy * gelu_exact_grad(x); }
};

// ------------------------------------------------------------------------------------------------
// Fill
// ------------------------------------------------------------------------------------------------

template <typename T, bool VEC>
__global__ void __launch_bounds__(kMapThreads) fill_kernel(int64_t n, T* out, T value) {
  constexpr int E = int(16 / sizeof(T));
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if constexpr (VEC) {
    Pack<T, E> pk;
#pragma unroll
    for (int j = 0; j < E; ++j) pk.v[j] = value;
    const int64_t nv = n / E;
    for (int64_t i = t; i < nv; i += stride) reinterpret_cast<Pack<T, E>*>(out)[i] = pk;
    done = nv * E;
  }
  for (int64_t i = done + t; i < n; i += stride) out[i] = value;
}

template <typename T>
int launch_fill(int64_t n, T* out, T value, cudaStream_t stream) {
  constexpr int E = int(16 / sizeof(T));
  if (aligned16(out) && n >= E) {
    fill_kernel<T, true><<<grid_for(n / E, kMapThreads), kMapThreads, 0, stream>>>(n, out, value);
  } else {
    fill_kernel<T, false><<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(n, out, value);
  }
  return vs_check_launch("vs_fill (fill_kernel)");
}

// Round to nearest even on the host, the same rule as __float2bfloat16_rn; NaN stays a quiet NaN.
bf16 host_float_to_bf16(float f) {
  uint32_t u = 0;
  memcpy(&u, &f, sizeof(u));
  uint16_t bits;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    bits = uint16_t((u >> 16) | 0x0040u);
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = uint16_t(u >> 16);
  }
  __nv_bfloat16_raw raw;
  raw.x = bits;
  return bf16(raw);
}

// ------------------------------------------------------------------------------------------------
// Broadcasts over rows: out[o, i] = op(a[o, i], b[i]) (COL) or op(a[o, i], s[o]) with s f32 (ROW)
// ------------------------------------------------------------------------------------------------

template <typename T, typename TB, bool ROW, typename Op, int E, bool VEC>
__global__ void __launch_bounds__(kMapThreads)
    bcast_kernel(int64_t outer, int64_t inner, const T* a, const TB* b, T* out, Op op) {
  const int64_t n = outer * inner;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (VEC) {
    // inner % E == 0 here, so a pack never straddles two rows.
    for (int64_t p = t; p < n / E; p += stride) {
      const int64_t e = p * E;
      const int64_t o = e / inner, i = e - o * inner;
      float va[E], vb[E], vo[E];
      load_pack<T, E>(a + e, va);
      if constexpr (ROW) {
        const float s = to_f(b[o]);
#pragma unroll
        for (int j = 0; j < E; ++j) vb[j] = s;
      } else {
        load_pack<TB, E>(b + i, vb);
      }
#pragma unroll
      for (int j = 0; j < E; ++j) vo[j] = op(va[j], vb[j]);
      store_pack<T, E>(out + e, vo);
    }
  } else {
    for (int64_t e = t; e < n; e += stride) {
      const int64_t o = e / inner, i = e - o * inner;
      const float vb = ROW ? to_f(b[o]) : to_f(b[i]);
      out[e] = from_f<T>(op(to_f(a[e]), vb));
    }
  }
}

struct Mul {
  __device__ float operator()(float a, float b) const { return a * b; }
};

template <typename T, typename TB, bool ROW, typename Op>
int launch_bcast(const char* kernel, int64_t outer, int64_t inner, const T* a, const TB* b, T* out, Op op,
                 cudaStream_t stream) {
  const int64_t n = outer * inner;
  if (n == 0) return VS_OK;
  constexpr int E = int(16 / sizeof(T));
  const bool vec = inner % E == 0 && aligned16(a) && aligned16(out) && (ROW || aligned16(b));
  if (vec) {
    bcast_kernel<T, TB, ROW, Op, E, true><<<grid_for(n / E, kMapThreads), kMapThreads, 0, stream>>>(outer, inner, a,
                                                                                                     b, out, op);
  } else {
    bcast_kernel<T, TB, ROW, Op, E, false><<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(outer, inner, a, b,
                                                                                                  out, op);
  }
  return vs_check_launch(kernel);
}

// ------------------------------------------------------------------------------------------------
// Column sums. Pass 1: block (32 columns x 8 row lanes) sums one chunk of rows for its columns, in a
// fixed order; pass 2 adds the chunk partials in chunk order. The chunking depends only on the shape and
// the device's SM count, so results repeat exactly from run to run.
// ------------------------------------------------------------------------------------------------

constexpr int kColTile = 32;
constexpr int kRowLanes = 8;

template <typename T>
__global__ void __launch_bounds__(kColTile* kRowLanes)
    col_partial_kernel(int64_t outer, int64_t inner, int64_t rows_per_chunk, const T* x, float* partial,
                       float* out, int accumulate) {
  __shared__ float red[kRowLanes][kColTile + 1];
  const int64_t col = int64_t(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = min(outer, r0 + rows_per_chunk);
  float acc = 0.0f;
  if (col < inner) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) acc += to_f(x[r * inner + col]);
  }
  red[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < inner) {
    float s = 0.0f;
#pragma unroll
    for (int y = 0; y < kRowLanes; ++y) s += red[y][threadIdx.x];
    if (partial != nullptr) {
      partial[int64_t(blockIdx.y) * inner + col] = s;
    } else {
      out[col] = accumulate ? out[col] + s : s;
    }
  }
}

__global__ void col_final_kernel(int64_t inner, int64_t chunks, const float* partial, float* out, int accumulate) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < inner; c += stride) {
    float s = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) s += partial[k * inner + c];
    out[c] = accumulate ? out[c] + s : s;
  }
}

// out (+)= column sums of x: (outer, inner), deterministic (see above).
int column_sums(const char* fn, int dtype, int64_t outer, int64_t inner, const void* x, float* out, int accumulate,
                cudaStream_t stream) {
  if (inner == 0) return VS_OK;
  if (outer == 0) {
    if (!accumulate) VSW_CUDA(fn, cudaMemsetAsync(out, 0, size_t(inner) * sizeof(float), stream));
    return VS_OK;
  }
  const int64_t col_tiles = (inner + kColTile - 1) / kColTile;
  int64_t chunks = (int64_t(sm_count()) * 4 + col_tiles - 1) / col_tiles;
  const int64_t max_by_rows = (outer + 63) / 64;  // at least ~64 rows per chunk
  if (chunks > max_by_rows) chunks = max_by_rows;
  const int64_t max_by_scratch = int64_t(kScratchBytes / sizeof(float)) / inner;
  if (chunks > max_by_scratch) chunks = max_by_scratch;
  if (chunks > 65535) chunks = 65535;
  if (chunks < 1) chunks = 1;
  const int64_t rows_per_chunk = (outer + chunks - 1) / chunks;
  chunks = (outer + rows_per_chunk - 1) / rows_per_chunk;
  if (col_tiles > 0x7fffffff) return vs_fail(VS_ERR_ARG, "%s: inner = %lld is too large", fn, (long long)inner);

  float* partial = nullptr;
  if (chunks > 1) VSW_TRY(stream_scratch(fn, stream, &partial));
  const dim3 grid{unsigned(col_tiles), unsigned(chunks), 1u};
  const dim3 block{unsigned(kColTile), unsigned(kRowLanes), 1u};
  if (dtype == VS_BF16) {
    col_partial_kernel<bf16><<<grid, block, 0, stream>>>(outer, inner, rows_per_chunk, static_cast<const bf16*>(x),
                                                         partial, out, accumulate);
  } else {
    col_partial_kernel<float><<<grid, block, 0, stream>>>(outer, inner, rows_per_chunk, static_cast<const float*>(x),
                                                          partial, out, accumulate);
  }
  VSW_TRY(vs_check_launch("vs_sum_outer (col_partial_kernel)"));
  if (chunks > 1) {
    col_final_kernel<<<grid_for(inner, 256, 4), 256, 0, stream>>>(inner, chunks, partial, out, accumulate);
    VSW_TRY(vs_check_launch("vs_sum_outer (col_final_kernel)"));
  }
  return VS_OK;
}

}  // namespace
}  // namespace vsw

using namespace vsw;

// ------------------------------------------------------------------------------------------------
// ABI
// ------------------------------------------------------------------------------------------------

int vs_cast(int src_dtype, int dst_dtype, int64_t n, const void* src, void* dst, vs_stream stream) {
  static const char* fn = "vs_cast";
  VSW_TRY(check_size(fn, "n", n));
  const bool ok = (src_dtype == VS_F32 && dst_dtype == VS_BF16) || (src_dtype == VS_BF16 && dst_dtype == VS_F32) ||
                  (src_dtype == VS_U8 && (dst_dtype == VS_F32 || dst_dtype == VS_BF16)) ||
                  (src_dtype == dst_dtype && dtype_size(src_dtype) > 0);
  if (!ok) {
    return vs_fail(VS_ERR_DTYPE, "%s: %s -> %s is not supported (f32 <-> bf16, u8 -> f32/bf16)", fn,
                   dtype_name(src_dtype), dtype_name(dst_dtype));
  }
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "src", src));
  VSW_TRY(check_ptr(fn, "dst", dst));
  cudaStream_t s = as_stream(stream);
  if (src_dtype == dst_dtype) {
    VSW_CUDA(fn, cudaMemcpyAsync(dst, src, size_t(n) * size_t(dtype_size(src_dtype)), cudaMemcpyDeviceToDevice, s));
    return VS_OK;
  }
  if (src_dtype == VS_F32) {
    return launch_map1(fn, n, static_cast<const float*>(src), static_cast<bf16*>(dst), Identity{}, s);
  }
  if (src_dtype == VS_BF16) {
    return launch_map1(fn, n, static_cast<const bf16*>(src), static_cast<float*>(dst), Identity{}, s);
  }
  if (dst_dtype == VS_F32) {
    return launch_map1(fn, n, static_cast<const uint8_t*>(src), static_cast<float*>(dst), Identity{}, s);
  }
  return launch_map1(fn, n, static_cast<const uint8_t*>(src), static_cast<bf16*>(dst), Identity{}, s);
}

int vs_fill(int dtype, int64_t n, float value, void* dst, vs_stream stream) {
  static const char* fn = "vs_fill";
  VSW_TRY(check_size(fn, "n", n));
  if (dtype_size(dtype) == 0) return vs_fail(VS_ERR_DTYPE, "%s: unknown dtype %d", fn, dtype);
  if (dtype == VS_I32 || dtype == VS_U8) {
    const float lo = dtype == VS_U8 ? 0.0f : -2147483648.0f, hi = dtype == VS_U8 ? 255.0f : 2147483520.0f;
    if (!(value >= lo && value <= hi) || value != float(int64_t(value))) {
      return vs_fail(VS_ERR_ARG, "%s: value %g is not representable as %s", fn, double(value), dtype_name(dtype));
    }
  }
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "dst", dst));
  cudaStream_t s = as_stream(stream);
  switch (dtype) {
    case VS_F32: return launch_fill(n, static_cast<float*>(dst), value, s);
    case VS_BF16: return launch_fill(n, static_cast<bf16*>(dst), host_float_to_bf16(value), s);
    case VS_I32: return launch_fill(n, static_cast<int32_t*>(dst), int32_t(value), s);
    default: return launch_fill(n, static_cast<uint8_t*>(dst), uint8_t(value), s);
  }
}

int vs_add(int dtype, int64_t n, const void* a, const void* b, void* out, vs_stream stream) {
  static const char* fn = "vs_add";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "n", n));
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "a", a));
  VSW_TRY(check_ptr(fn, "b", b));
  VSW_TRY(check_ptr(fn, "out", out));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_map2(fn, n, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), Add{},
                       as_stream(stream));
  });
}

int vs_axpby(int dtype, int64_t n, float alpha, const void* x, float beta, void* y, vs_stream stream) {
  static const char* fn = "vs_axpby";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "n", n));
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "y", y));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    // beta 0 must not read y at all: 0 * NaN would leak an old NaN into the result.
    if (beta == 0.0f) {
      return launch_map1(fn, n, static_cast<const T*>(x), static_cast<T*>(y), Scale{alpha}, as_stream(stream));
    }
    return launch_map2(fn, n, static_cast<const T*>(x), static_cast<const T*>(y), static_cast<T*>(y),
                       Axpby{alpha, beta}, as_stream(stream));
  });
}

int vs_add_bcast(int dtype, int64_t outer, int64_t inner, const void* a, const void* b, void* out, vs_stream stream) {
  static const char* fn = "vs_add_bcast";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "outer", outer));
  VSW_TRY(check_size(fn, "inner", inner));
  if (outer == 0 || inner == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "a", a));
  VSW_TRY(check_ptr(fn, "b", b));
  VSW_TRY(check_ptr(fn, "out", out));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_bcast<T, T, false>(fn, outer, inner, static_cast<const T*>(a), static_cast<const T*>(b),
                                     static_cast<T*>(out), Add{}, as_stream(stream));
  });
}

int vs_sum_outer(int dtype, int64_t outer, int64_t inner, const void* x, float* out, int accumulate,
                 vs_stream stream) {
  static const char* fn = "vs_sum_outer";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "outer", outer));
  VSW_TRY(check_size(fn, "inner", inner));
  if (inner == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "out", out));
  if (outer > 0) VSW_TRY(check_ptr(fn, "x", x));
  return column_sums(fn, dtype, outer, inner, x, out, accumulate, as_stream(stream));
}

int vs_scale_rows(int dtype, int64_t rows, int64_t inner, const void* x, const float* scale, void* out,
                  vs_stream stream) {
  static const char* fn = "vs_scale_rows";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "rows", rows));
  VSW_TRY(check_size(fn, "inner", inner));
  if (rows == 0 || inner == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "scale", scale));
  VSW_TRY(check_ptr(fn, "out", out));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_bcast<T, float, true>(fn, rows, inner, static_cast<const T*>(x), scale, static_cast<T*>(out),
                                        Mul{}, as_stream(stream));
  });
}

int vs_gelu_fwd(int dtype, int64_t n, const void* x, void* y, vs_stream stream) {
  static const char* fn = "vs_gelu_fwd";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "n", n));
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "y", y));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_map1(fn, n, static_cast<const T*>(x), static_cast<T*>(y), Gelu{}, as_stream(stream));
  });
}

int vs_gelu_bwd(int dtype, int64_t n, const void* x, const void* dy, void* dx, vs_stream stream) {
  static const char* fn = "vs_gelu_bwd";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "n", n));
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "dy", dy));
  VSW_TRY(check_ptr(fn, "dx", dx));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_map2(fn, n, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dx), GeluGrad{},
                       as_stream(stream));
  });
}
