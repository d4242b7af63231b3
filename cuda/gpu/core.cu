// Library identity, error messages, devices, memory, streams and events; the per-stream scratch that
// the multi-pass kernels and cuBLASLt share.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

namespace {
// Per thread, as the ABI promises: concurrent callers never see each other's messages.
thread_local char t_last_error[2048] = "";
}  // namespace

int vs_fail(int status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_last_error, sizeof(t_last_error), fmt, ap);
  va_end(ap);
  return status;
}

namespace {

// Errors after which "any further CUDA work will return the same error" (driver_types.h): a kernel
// faulted, and whoever meets the error next is not the culprit.
bool is_sticky(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable: return true;
    default: return false;
  }
}

bool sync_launch() {
  static const bool on = [] {
    const char* v = getenv("VSWIFT_SYNC_LAUNCH");
    return v != nullptr && v[0] != '\0' && strcmp(v, "0") != 0;
  }();
  return on;
}

int fail_fault(const char* where, cudaError_t err) {
  return vs_fail(VS_ERR_DEVICE_FAULT,
                 "%s: an earlier kernel faulted on the device: %s (%s). Kernels run asynchronously, so this "
                 "call only found the fault; the CUDA context is unusable until the process exits. Rerun "
                 "with VSWIFT_SYNC_LAUNCH=1 to name the kernel that faulted",
                 where, cudaGetErrorString(err), cudaGetErrorName(err));
}

}  // namespace

int vs_fail_cuda(const char* fn, const char* call, cudaError_t err) {
  if (is_sticky(err)) return fail_fault(fn, err);
  return vs_fail(err == cudaErrorMemoryAllocation ? VS_ERR_NOMEM : VS_ERR_CUDA, "%s: %s failed: %s (%s)", fn,
                 call, cudaGetErrorString(err), cudaGetErrorName(err));
}

int vs_check_launch(const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_launch()) {
    err = cudaDeviceSynchronize();
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      const char* kind = is_sticky(err) ? "faulted on the device" : "failed while running";
      return vs_fail(is_sticky(err) ? VS_ERR_DEVICE_FAULT : VS_ERR_CUDA,
                     "%s: the kernel %s: %s (%s); found by VSWIFT_SYNC_LAUNCH=1's synchronisation after "
                     "its launch%s",
                     kernel, kind, cudaGetErrorString(err), cudaGetErrorName(err),
                     is_sticky(err) ? ", the CUDA context is unusable until the process exits" : "");
    }
    return VS_OK;
  }
  if (err == cudaSuccess) return VS_OK;
  if (is_sticky(err)) return fail_fault(kernel, err);
  return vs_fail(VS_ERR_CUDA, "%s: kernel launch failed: %s (%s)", kernel, cudaGetErrorString(err),
                 cudaGetErrorName(err));
}

const char* vs_last_error(void) { return t_last_error; }

int vs_abi_version(void) { return VS_ABI_VERSION; }

const char* vs_backend_name(void) { return "cuda"; }

// ------------------------------------------------------------------------------------------------
// Shared helpers
// ------------------------------------------------------------------------------------------------

namespace vsw {

const char* dtype_name(int dtype) {
  switch (dtype) {
    case VS_F32: return "f32";
    case VS_BF16: return "bf16";
    case VS_U8: return "u8";
    case VS_I32: return "i32";
    default: return "unknown";
  }
}

int dtype_size(int dtype) {
  switch (dtype) {
    case VS_F32: return 4;
    case VS_BF16: return 2;
    case VS_U8: return 1;
    case VS_I32: return 4;
    default: return 0;
  }
}

int check_size(const char* fn, const char* name, int64_t value) {
  if (value < 0) return vs_fail(VS_ERR_ARG, "%s: %s = %lld must not be negative", fn, name, (long long)value);
  return VS_OK;
}

int check_ptr(const char* fn, const char* name, const void* p) {
  if (p == nullptr) return vs_fail(VS_ERR_ARG, "%s: %s is NULL", fn, name);
  return VS_OK;
}

int check_float_dtype(const char* fn, int dtype) {
  if (dtype != VS_F32 && dtype != VS_BF16) {
    return vs_fail(VS_ERR_DTYPE, "%s: dtype %d (%s) is not supported, expected f32 or bf16", fn, dtype,
                   dtype_name(dtype));
  }
  return VS_OK;
}

int current_device(const char* fn, int* device) {
  VSW_CUDA(fn, cudaGetDevice(device));
  return VS_OK;
}

namespace {
constexpr int kMaxDevices = 64;
std::atomic<int> g_sm_count[kMaxDevices];    // 0 = not read yet
std::atomic<int> g_smem_optin[kMaxDevices];  // 0 = not read yet

// A device attribute of the current device, cached per device in `cache`; `fallback` if unreadable.
int cached_attribute(std::atomic<int>* cache, cudaDeviceAttr attr, int fallback) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    (void)cudaGetLastError();
    return fallback;
  }
  int v = cache[dev].load(std::memory_order_relaxed);
  if (v > 0) return v;
  if (cudaDeviceGetAttribute(&v, attr, dev) != cudaSuccess || v < 1) {
    (void)cudaGetLastError();
    return fallback;
  }
  cache[dev].store(v, std::memory_order_relaxed);
  return v;
}
}  // namespace

int sm_count() { return cached_attribute(g_sm_count, cudaDevAttrMultiProcessorCount, 1); }

int smem_optin() { return cached_attribute(g_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 48 << 10); }

// ------------------------------------------------------------------------------------------------
// Per-(device, stream) buffers
// ------------------------------------------------------------------------------------------------

namespace {

struct StreamBuffers {
  int device;
  cudaStream_t stream;
  float* scratch;
  void* gemm_ws;
};

std::mutex g_buffers_mutex;
std::vector<StreamBuffers> g_buffers;

// Caller holds the mutex.
StreamBuffers& buffers_for(int device, cudaStream_t stream) {
  for (StreamBuffers& b : g_buffers) {
    if (b.device == device && b.stream == stream) return b;
  }
  g_buffers.push_back(StreamBuffers{device, stream, nullptr, nullptr});
  return g_buffers.back();
}

}  // namespace

int stream_scratch(const char* fn, cudaStream_t stream, float** scratch) {
  int dev = 0;
  VSW_TRY(current_device(fn, &dev));
  std::lock_guard<std::mutex> lock(g_buffers_mutex);
  StreamBuffers& b = buffers_for(dev, stream);
  if (b.scratch == nullptr) {
    void* p = nullptr;
    VSW_CUDA(fn, cudaMalloc(&p, kScratchBytes));
    b.scratch = static_cast<float*>(p);
  }
  *scratch = b.scratch;
  return VS_OK;
}

int stream_gemm_workspace(const char* fn, cudaStream_t stream, void** ws, size_t* bytes) {
  int dev = 0;
  VSW_TRY(current_device(fn, &dev));
  std::lock_guard<std::mutex> lock(g_buffers_mutex);
  StreamBuffers& b = buffers_for(dev, stream);
  if (b.gemm_ws == nullptr) VSW_CUDA(fn, cudaMalloc(&b.gemm_ws, kGemmWorkspaceBytes));
  *ws = b.gemm_ws;
  *bytes = kGemmWorkspaceBytes;
  return VS_OK;
}

void release_stream(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_buffers_mutex);
  int saved = -1;
  if (cudaGetDevice(&saved) != cudaSuccess) saved = -1;
  for (size_t i = 0; i < g_buffers.size();) {
    StreamBuffers& b = g_buffers[i];
    if (b.stream != stream) {
      ++i;
      continue;
    }
    if (cudaSetDevice(b.device) == cudaSuccess) {
      if (b.scratch) (void)cudaFree(b.scratch);
      if (b.gemm_ws) (void)cudaFree(b.gemm_ws);
    }
    g_buffers[i] = g_buffers.back();
    g_buffers.pop_back();
  }
  if (saved >= 0) (void)cudaSetDevice(saved);
  (void)cudaGetLastError();
}

}  // namespace vsw

// ------------------------------------------------------------------------------------------------
// Devices
// ------------------------------------------------------------------------------------------------

int vs_device_count(int* count) {
  static const char* fn = "vs_device_count";
  VSW_TRY(vsw::check_ptr(fn, "count", count));
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || err == cudaErrorInitializationError ||
      err == cudaErrorSystemDriverMismatch || err == cudaErrorCompatNotSupportedOnDevice) {
    // No usable driver or device is an answer, not a failure: the caller falls back to the host build.
    // The reason is still recorded (vs_last_error), so that the fallback names it: an old driver is
    // something the user can fix, and must not look like a machine without a GPU.
    (void)cudaGetLastError();
    *count = 0;
    int driver = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
    (void)cudaGetLastError();
    if (err == cudaErrorInsufficientDriver) {
      vs_fail(VS_OK,
              "the NVIDIA driver is too old for this build (cudaErrorInsufficientDriver): the driver supports "
              "CUDA %d.%d, libvswift_cuda.so was built with the CUDA %d.%d runtime (CUDA 13 needs driver R580 "
              "or newer, CUDA 12 R525 or newer); update the driver or rebuild with an older CUDA toolkit",
              driver / 1000, (driver % 1000) / 10, CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10);
    } else {
      vs_fail(VS_OK, "cudaGetDeviceCount failed: %s (%s); driver version %d.%d", cudaGetErrorString(err),
              cudaGetErrorName(err), driver / 1000, (driver % 1000) / 10);
    }
    return VS_OK;
  }
  VSW_CUDA(fn, err);
  *count = n;
  return VS_OK;
}

int vs_init(int device) {
  static const char* fn = "vs_init";
  int n = 0;
  VSW_TRY(vs_device_count(&n));
  if (device < 0 || device >= n) {
    return vs_fail(VS_ERR_ARG, "%s: device %d is out of range, %d CUDA device(s) visible", fn, device, n);
  }
  VSW_CUDA(fn, cudaSetDevice(device));
  // Creates the primary context now, so that the first kernel does not pay for it.
  VSW_CUDA(fn, cudaFree(nullptr));
  return VS_OK;
}

int vs_device_name(int device, char* buf, int buf_len) {
  static const char* fn = "vs_device_name";
  VSW_TRY(vsw::check_ptr(fn, "buf", buf));
  if (buf_len < 1) return vs_fail(VS_ERR_ARG, "%s: buf_len = %d must be at least 1", fn, buf_len);
  int n = 0;
  VSW_TRY(vs_device_count(&n));
  if (device < 0 || device >= n) {
    return vs_fail(VS_ERR_ARG, "%s: device %d is out of range, %d CUDA device(s) visible", fn, device, n);
  }
  cudaDeviceProp prop;
  VSW_CUDA(fn, cudaGetDeviceProperties(&prop, device));
  snprintf(buf, size_t(buf_len), "%s, %.1f GiB, compute capability %d.%d, %d SMs", prop.name,
           double(prop.totalGlobalMem) / double(1u << 30), prop.major, prop.minor, prop.multiProcessorCount);
  return VS_OK;
}

int vs_mem_info(int64_t* free_bytes, int64_t* total_bytes) {
  static const char* fn = "vs_mem_info";
  VSW_TRY(vsw::check_ptr(fn, "free_bytes", free_bytes));
  VSW_TRY(vsw::check_ptr(fn, "total_bytes", total_bytes));
  size_t f = 0, t = 0;
  VSW_CUDA(fn, cudaMemGetInfo(&f, &t));
  *free_bytes = int64_t(f);
  *total_bytes = int64_t(t);
  return VS_OK;
}

int vs_set_threads(int threads) {
  // Host-build knob; the CUDA build has no CPU threads to size.
  if (threads < 0) return vs_fail(VS_ERR_ARG, "vs_set_threads: threads = %d must not be negative", threads);
  return VS_OK;
}

// ------------------------------------------------------------------------------------------------
// Memory
// ------------------------------------------------------------------------------------------------

int vs_malloc(void** ptr, int64_t bytes) {
  static const char* fn = "vs_malloc";
  VSW_TRY(vsw::check_ptr(fn, "ptr", ptr));
  VSW_TRY(vsw::check_size(fn, "bytes", bytes));
  *ptr = nullptr;
  if (bytes == 0) return VS_OK;
  // cudaMalloc returns at least 256-byte aligned memory, which is what the ABI promises.
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, size_t(bytes));
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) != cudaSuccess) (void)cudaGetLastError();
    return vs_fail(err == cudaErrorMemoryAllocation ? VS_ERR_NOMEM : VS_ERR_CUDA,
                   "%s: cudaMalloc of %lld bytes failed: %s (free %lld of %lld bytes)", fn, (long long)bytes,
                   cudaGetErrorString(err), (long long)f, (long long)t);
  }
  *ptr = p;
  return VS_OK;
}

int vs_free(void* ptr) {
  if (ptr == nullptr) return VS_OK;
  VSW_CUDA("vs_free", cudaFree(ptr));
  return VS_OK;
}

int vs_malloc_host(void** ptr, int64_t bytes) {
  static const char* fn = "vs_malloc_host";
  VSW_TRY(vsw::check_ptr(fn, "ptr", ptr));
  VSW_TRY(vsw::check_size(fn, "bytes", bytes));
  *ptr = nullptr;
  if (bytes == 0) return VS_OK;
  VSW_CUDA(fn, cudaMallocHost(ptr, size_t(bytes)));
  return VS_OK;
}

int vs_free_host(void* ptr) {
  if (ptr == nullptr) return VS_OK;
  VSW_CUDA("vs_free_host", cudaFreeHost(ptr));
  return VS_OK;
}

int vs_memcpy(void* dst, const void* src, int64_t bytes, int kind, vs_stream stream) {
  static const char* fn = "vs_memcpy";
  VSW_TRY(vsw::check_size(fn, "bytes", bytes));
  if (bytes == 0) return VS_OK;
  VSW_TRY(vsw::check_ptr(fn, "dst", dst));
  VSW_TRY(vsw::check_ptr(fn, "src", src));
  cudaMemcpyKind k;
  switch (kind) {
    case VS_COPY_H2H:
      // Host to host needs no device and is not stream ordered, as in the host build.
      memmove(dst, src, size_t(bytes));
      return VS_OK;
    case VS_COPY_H2D: k = cudaMemcpyHostToDevice; break;
    case VS_COPY_D2H: k = cudaMemcpyDeviceToHost; break;
    case VS_COPY_D2D: k = cudaMemcpyDeviceToDevice; break;
    default: return vs_fail(VS_ERR_ARG, "%s: kind = %d is not a vs_copy_kind (0..3)", fn, kind);
  }
  VSW_CUDA(fn, cudaMemcpyAsync(dst, src, size_t(bytes), k, vsw::as_stream(stream)));
  return VS_OK;
}

int vs_memset(void* dst, int value, int64_t bytes, vs_stream stream) {
  static const char* fn = "vs_memset";
  VSW_TRY(vsw::check_size(fn, "bytes", bytes));
  if (bytes == 0) return VS_OK;
  VSW_TRY(vsw::check_ptr(fn, "dst", dst));
  VSW_CUDA(fn, cudaMemsetAsync(dst, value, size_t(bytes), vsw::as_stream(stream)));
  return VS_OK;
}

// ------------------------------------------------------------------------------------------------
// Streams and events
// ------------------------------------------------------------------------------------------------

int vs_stream_create(vs_stream* stream) {
  static const char* fn = "vs_stream_create";
  VSW_TRY(vsw::check_ptr(fn, "stream", stream));
  // Non-blocking: a stream made with cudaStreamCreate is ordered with every launch on the legacy default
  // stream (NULL), which made each kernel queued after a bucket's all-reduce wait for it. The trainer
  // launches everything on its compute stream (lib/ffi: Native.stream) and orders its streams with
  // events only; NULL is left to the self-test and to callers that use no stream of their own.
  cudaStream_t s = nullptr;
  VSW_CUDA(fn, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  *stream = reinterpret_cast<vs_stream>(s);
  return VS_OK;
}

int vs_stream_destroy(vs_stream stream) {
  static const char* fn = "vs_stream_destroy";
  if (stream == nullptr) return vs_fail(VS_ERR_ARG, "%s: the default stream (NULL) cannot be destroyed", fn);
  cudaStream_t s = vsw::as_stream(stream);
  // Work still queued may use this stream's scratch; finish it before the buffers go, and before a new
  // stream can be handed the same handle value.
  VSW_CUDA(fn, cudaStreamSynchronize(s));
  vsw::release_stream(s);
  VSW_CUDA(fn, cudaStreamDestroy(s));
  return VS_OK;
}

int vs_stream_sync(vs_stream stream) {
  VSW_CUDA("vs_stream_sync", cudaStreamSynchronize(vsw::as_stream(stream)));
  return VS_OK;
}

int vs_device_sync(void) {
  VSW_CUDA("vs_device_sync", cudaDeviceSynchronize());
  return VS_OK;
}

int vs_stream_wait_event(vs_stream stream, void* event) {
  static const char* fn = "vs_stream_wait_event";
  VSW_TRY(vsw::check_ptr(fn, "event", event));
  VSW_CUDA(fn, cudaStreamWaitEvent(vsw::as_stream(stream), reinterpret_cast<cudaEvent_t>(event), 0));
  return VS_OK;
}

int vs_event_create(void** event) {
  static const char* fn = "vs_event_create";
  VSW_TRY(vsw::check_ptr(fn, "event", event));
  cudaEvent_t e = nullptr;
  VSW_CUDA(fn, cudaEventCreate(&e));
  *event = reinterpret_cast<void*>(e);
  return VS_OK;
}

int vs_event_destroy(void* event) {
  if (event == nullptr) return VS_OK;
  VSW_CUDA("vs_event_destroy", cudaEventDestroy(reinterpret_cast<cudaEvent_t>(event)));
  return VS_OK;
}

int vs_event_record(void* event, vs_stream stream) {
  static const char* fn = "vs_event_record";
  VSW_TRY(vsw::check_ptr(fn, "event", event));
  VSW_CUDA(fn, cudaEventRecord(reinterpret_cast<cudaEvent_t>(event), vsw::as_stream(stream)));
  return VS_OK;
}

int vs_event_elapsed_ms(void* start, void* end, float* ms) {
  static const char* fn = "vs_event_elapsed_ms";
  VSW_TRY(vsw::check_ptr(fn, "start", start));
  VSW_TRY(vsw::check_ptr(fn, "end", end));
  VSW_TRY(vsw::check_ptr(fn, "ms", ms));
  VSW_CUDA(fn, cudaEventSynchronize(reinterpret_cast<cudaEvent_t>(end)));
  VSW_CUDA(fn, cudaEventElapsedTime(ms, reinterpret_cast<cudaEvent_t>(start), reinterpret_cast<cudaEvent_t>(end)));
  return VS_OK;
}
