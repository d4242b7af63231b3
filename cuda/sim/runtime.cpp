// The CUDA runtime API of the simulated device. Work runs when it is issued, so every stream and event
// ordering rule holds trivially; what the runtime checks is what the driver would refuse: copies
// outside live allocations, unknown streams and events, shared-memory opt-ins beyond the device.
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <map>
#include <mutex>
#include <set>
#include <string>

#include <cuda_runtime.h>

#include "memory.h"
#include "vsim.h"

struct CUstream_st {
  int magic;
};
struct CUevent_st {
  int magic;
  bool recorded;
  double ms;
};

namespace vsim {
namespace {

constexpr int kStreamMagic = 0x5157;
constexpr int kEventMagic = 0x4576;
constexpr size_t kTotalMem = size_t(80) << 30;

thread_local cudaError_t t_error = cudaSuccess;  // sticky until cudaGetLastError, per host thread
thread_local int t_device = 0;

std::mutex g_mu;
std::set<const void*> g_streams, g_events;
std::map<const void*, size_t> g_optin;

double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}

cudaError_t fail(cudaError_t e, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
cudaError_t fail(cudaError_t e, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  set_detail("%s", buf);
  return e;
}

bool stream_ok(cudaStream_t s) {
  if (s == nullptr) return true;
  std::lock_guard<std::mutex> lock(g_mu);
  return g_streams.count(s) != 0;
}

bool event_ok(cudaEvent_t ev) {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_events.count(ev) != 0;
}

// Checks one side of a copy: device memory must be inside a live allocation.
cudaError_t check_side(const char* fn, const char* side, const void* p, size_t bytes) {
  std::string why;
  if (!device_range_ok(p, bytes, &why)) return fail(cudaErrorInvalidValue, "%s: %s: %s", fn, side, why.c_str());
  return cudaSuccess;
}

}  // namespace

void record_launch_error(cudaError_t e) {
  if (t_error == cudaSuccess) t_error = e;
}

// Dynamic shared memory a block may opt in to: H100's 227 KiB, or VSWIFT_SIM_SMEM KiB (99 for an A10 or
// L4, 163 for an A100).
size_t smem_optin_limit() {
  static const size_t limit = [] {
    const char* v = getenv("VSWIFT_SIM_SMEM");
    if (v == nullptr || v[0] == '\0') return size_t(227) << 10;
    const long kib = strtol(v, nullptr, 10);
    return kib > 0 ? size_t(kib) << 10 : size_t(227) << 10;
  }();
  return limit;
}

size_t func_smem_optin(const void* fn) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_optin.find(fn);
  return it == g_optin.end() ? 0 : it->second;
}

}  // namespace vsim

using namespace vsim;

// Points the run-time library search of dynlib.cu at this library's own simulated cuBLASLt and NCCL
// (cublaslt.cpp, nccl.cpp): the same dlopen and dlsym path as on a GPU machine.
__attribute__((constructor)) static void vsim_point_libraries_here() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&vsim_point_libraries_here), &info) && info.dli_fname) {
    setenv("VSWIFT_CUBLASLT", info.dli_fname, 1);
    setenv("VSWIFT_NCCL", info.dli_fname, 1);
  }
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = t_error;
  t_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return t_error; }

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorSystemDriverMismatch: return "cudaErrorSystemDriverMismatch";
    case cudaErrorCompatNotSupportedOnDevice: return "cudaErrorCompatNotSupportedOnDevice";
  }
  return "cudaErrorUnknown";
}

// The simulator's message for the last error of this thread names the kernel, block and thread; the
// generic text follows in the caller's message as the error name.
const char* cudaGetErrorString(cudaError_t err) {
  if (err != cudaSuccess && last_detail()[0] != '\0') return last_detail();
  return cudaGetErrorName(err);
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = t_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice, "cudaSetDevice(%d): the simulator has one device", device);
  t_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties(%d): one device", device);
  memset(prop, 0, sizeof(*prop));
  snprintf(prop->name, sizeof(prop->name), "vswift CUDA simulator (H100 SXM, %zu KiB shared memory per block)",
           smem_optin_limit() >> 10);
  prop->totalGlobalMem = kTotalMem;
  prop->sharedMemPerBlock = 48 << 10;
  prop->sharedMemPerBlockOptin = smem_optin_limit();
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  const cudaError_t e = cudaGetDeviceProperties(&p, device);
  if (e != cudaSuccess) return e;
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(p.sharedMemPerBlockOptin); return cudaSuccess;
  }
  return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute %d is not simulated", int(attr));
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  const size_t used = device_bytes_in_use();
  *total_bytes = kTotalMem;
  *free_bytes = used < kTotalMem ? kTotalMem - used : 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (ptr == nullptr) return fail(cudaErrorInvalidValue, "cudaMalloc: ptr is NULL");
  if (bytes == 0) {
    *ptr = nullptr;
    return cudaSuccess;
  }
  if (bytes > kTotalMem - device_bytes_in_use()) {
    return fail(cudaErrorMemoryAllocation, "cudaMalloc of %zu bytes: the simulated device has %zu bytes free",
                bytes, kTotalMem - device_bytes_in_use());
  }
  void* p = device_alloc(bytes);
  if (p == nullptr) return fail(cudaErrorMemoryAllocation, "cudaMalloc of %zu bytes: the host is out of memory", bytes);
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  std::string why;
  if (!device_free(ptr, &why)) return fail(cudaErrorInvalidValue, "cudaFree: %s", why.c_str());
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (posix_memalign(ptr, 4096, bytes == 0 ? 1 : bytes) != 0) {
    return fail(cudaErrorMemoryAllocation, "cudaMallocHost of %zu bytes failed", bytes);
  }
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  static const char* fn = "cudaMemcpyAsync";
  if (!stream_ok(stream)) return fail(cudaErrorInvalidResourceHandle, "%s: unknown stream %p", fn, (void*)stream);
  if (bytes == 0) return cudaSuccess;
  cudaError_t e = cudaSuccess;
  if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) e = check_side(fn, "source", src, bytes);
  if (e == cudaSuccess && (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice)) {
    e = check_side(fn, "destination", dst, bytes);
  }
  if (e != cudaSuccess) return e;
  memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  static const char* fn = "cudaMemsetAsync";
  if (!stream_ok(stream)) return fail(cudaErrorInvalidResourceHandle, "%s: unknown stream %p", fn, (void*)stream);
  if (bytes == 0) return cudaSuccess;
  const cudaError_t e = check_side(fn, "destination", dst, bytes);
  if (e != cudaSuccess) return e;
  memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  cudaStream_t s = new CUstream_st{kStreamMagic};
  std::lock_guard<std::mutex> lock(g_mu);
  g_streams.insert(s);
  *stream = s;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  (void)flags;
  return cudaStreamCreate(stream);
}

cudaError_t cudaDriverGetVersion(int* version) {
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (stream == nullptr || g_streams.erase(stream) == 0) {
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: unknown stream %p", (void*)stream);
  }
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (!stream_ok(stream)) {
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: unknown stream %p", (void*)stream);
  }
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
  if (!stream_ok(stream) || !event_ok(event)) {
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: unknown stream %p or event %p", (void*)stream,
                (void*)event);
  }
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  cudaEvent_t e = new CUevent_st{kEventMagic, false, 0.0};
  std::lock_guard<std::mutex> lock(g_mu);
  g_events.insert(e);
  *event = e;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_events.erase(event) == 0) {
    return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: unknown event %p", (void*)event);
  }
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!stream_ok(stream) || !event_ok(event)) {
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: unknown stream %p or event %p", (void*)stream,
                (void*)event);
  }
  event->recorded = true;
  event->ms = now_ms();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event_ok(event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: unknown event %p", (void*)event);
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!event_ok(start) || !event_ok(end)) {
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: unknown event");
  }
  if (!start->recorded || !end->recorded) {
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was never recorded");
  }
  *ms = float(end->ms - start->ms);
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) {
    return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute %d is not simulated", int(attr));
  }
  if (value < 0 || size_t(value) > smem_optin_limit()) {
    return fail(cudaErrorInvalidValue,
                "cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d): the device allows at most %zu bytes", value,
                smem_optin_limit());
  }
  std::lock_guard<std::mutex> lock(g_mu);
  g_optin[func] = size_t(value);
  return cudaSuccess;
}
