// Shared by every CUDA source of libvswift_cuda.so: error recording and launch checks, dtype loads and
// stores, 16-byte packs, reductions and the per-stream scratch memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../vswift.h"

// Records a printf-style message for vs_last_error() on this thread and returns `status`.
int vs_fail(int status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Turns a pending launch or runtime error into a status naming `kernel`; VS_OK when there is none. A
// sticky error (a device fault) found here belongs to an earlier kernel and is worded so
// (VS_ERR_DEVICE_FAULT). With VSWIFT_SYNC_LAUNCH=1 the device is synchronised after every launch, so a
// fault is reported against the kernel that caused it (CUDA_LAUNCH_BLOCKING's role, with our names).
int vs_check_launch(const char* kernel);

// The status and message for a failed CUDA runtime call `call` made by entry point `fn`: a sticky error
// becomes VS_ERR_DEVICE_FAULT worded as an earlier kernel's fault, an allocation failure VS_ERR_NOMEM,
// anything else VS_ERR_CUDA.
int vs_fail_cuda(const char* fn, const char* call, cudaError_t err);

// Returns early with the status of an expression that failed (the message is already recorded).
#define VSW_TRY(expr)                 \
  do {                                \
    int vsw_try_status_ = (expr);     \
    if (vsw_try_status_ != VS_OK) {   \
      return vsw_try_status_;         \
    }                                 \
  } while (0)

// A CUDA runtime call whose failure becomes VS_ERR_CUDA (VS_ERR_NOMEM for an allocation), naming the
// entry point and the call. The error is also cleared from the runtime, so that a later launch check does
// not report it against an unrelated kernel.
#define VSW_CUDA(fn, call)                                \
  do {                                                    \
    cudaError_t vsw_cuda_err_ = (call);                   \
    if (vsw_cuda_err_ != cudaSuccess) {                   \
      (void)cudaGetLastError();                           \
      return vs_fail_cuda(fn, #call, vsw_cuda_err_);      \
    }                                                     \
  } while (0)

namespace vsw {

typedef __nv_bfloat16 bf16;

// ------------------------------------------------------------------------------------------------
// Host-side helpers (core.cu)
// ------------------------------------------------------------------------------------------------

const char* dtype_name(int dtype);
int dtype_size(int dtype);  // 0 for an unknown dtype

// The device current on this thread, as a status.
int current_device(const char* fn, int* device);
// Multiprocessor count of the current device (cached); 1 if it cannot be read.
int sm_count();
// Shared memory a block of the current device may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin,
// cached): 163 KiB on sm_80, 99 KiB on sm_86 / sm_89, 227 KiB on sm_90; 48 KiB if it cannot be read.
int smem_optin();

// Scratch for multi-pass deterministic reductions. One buffer per (device, stream): kernels queued on
// one stream run in order, so consecutive calls can reuse it without synchronisation, while two streams
// never share one. Allocated on first use (the first training step), never in steady state.
constexpr size_t kScratchBytes = size_t(8) << 20;
int stream_scratch(const char* fn, cudaStream_t stream, float** scratch);
// cuBLASLt workspace, one per (device, stream) for the same reason; `bytes` receives its size.
constexpr size_t kGemmWorkspaceBytes = size_t(32) << 20;
int stream_gemm_workspace(const char* fn, cudaStream_t stream, void** ws, size_t* bytes);
// Frees the buffers of a stream that is being destroyed (after it was synchronised).
void release_stream(cudaStream_t stream);

inline cudaStream_t as_stream(vs_stream s) { return reinterpret_cast<cudaStream_t>(s); }

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Blocks for a grid-stride loop over `items` work items with `threads` per block: enough to fill the
// device a few times over, no more (the loop covers the rest).
inline unsigned grid_for(int64_t items, int threads, int waves = 8) {
  int64_t blocks = (items + threads - 1) / threads;
  int64_t cap = int64_t(sm_count()) * waves;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  return unsigned(blocks);
}

// Shared precondition checks: each records a message naming the entry point and returns a status.
int check_size(const char* fn, const char* name, int64_t value);  // value >= 0
int check_ptr(const char* fn, const char* name, const void* p);   // p != NULL
int check_float_dtype(const char* fn, int dtype);                 // f32 or bf16

// ------------------------------------------------------------------------------------------------
// Device-side helpers
// ------------------------------------------------------------------------------------------------

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(uint8_t x) { return float(x); }
__device__ __forceinline__ float to_f(int32_t x) { return float(x); }

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 from_f<bf16>(float x) {
  return __float2bfloat16_rn(x);
}

// E elements of T moved with 16-byte loads and stores (E * sizeof(T) is a multiple of 16). The struct's
// alignment is what lets the compiler emit ld.global.v4 / st.global.v4.
template <typename T, int E>
struct alignas(16) Pack {
  T v[E];
};

template <typename T, int E>
__device__ __forceinline__ void load_pack(const T* p, float (&out)[E]) {
  static_assert((E * sizeof(T)) % 16 == 0, "a pack is a whole number of 16-byte words");
  Pack<T, E> pk = *reinterpret_cast<const Pack<T, E>*>(p);
#pragma unroll
  for (int i = 0; i < E; ++i) out[i] = to_f(pk.v[i]);
}

template <typename T, int E>
__device__ __forceinline__ void store_pack(T* p, const float (&in)[E]) {
  static_assert((E * sizeof(T)) % 16 == 0, "a pack is a whole number of 16-byte words");
  Pack<T, E> pk;
#pragma unroll
  for (int i = 0; i < E; ++i) pk.v[i] = from_f<T>(in[i]);
  *reinterpret_cast<Pack<T, E>*>(p) = pk;
}

// Elements per 16 bytes of the narrowest of the types (the vector width of a mixed-type loop).
template <typename... Ts>
struct PackWidth;
template <typename T>
struct PackWidth<T> {
  static constexpr int value = int(16 / sizeof(T));
};
template <typename T, typename... Ts>
struct PackWidth<T, Ts...> {
  static constexpr int value =
      PackWidth<T>::value > PackWidth<Ts...>::value ? PackWidth<T>::value : PackWidth<Ts...>::value;
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block, returned to every thread. The combination order depends only on blockDim, so the
// result is reproducible run to run. `red` holds at least 32 values; blockDim.x is a multiple of 32.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // `red` may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nwarps ? red[lane] : A(0);
  if (warp == 0) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  return red[0];
}

__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nwarps ? red[lane] : -INFINITY;
  if (warp == 0) {
    v = warp_max(v);
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  return red[0];
}

// Exact GELU and its derivative (erf form, as torch.nn.GELU() with approximate='none').
__device__ __forceinline__ float gelu_exact(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_exact_grad(float x) {
  const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}

}  // namespace vsw
