// Collectives through NCCL, opened at run time (libnccl.so.2 from the CUDA toolkit, the nvidia-nccl pip
// wheel, conda, or the system).
#include <dlfcn.h>
#include <string.h>

#include <mutex>

#include "common.cuh"
#include "dynlib.h"
#include "nccl_api.h"

namespace vsw {
namespace {

struct NcclApi {
  bool ok = false;
  char error[1900] = "";
  char path[512] = "";
  nccl::GetUniqueIdFn get_unique_id = nullptr;
  nccl::CommInitRankFn comm_init_rank = nullptr;
  nccl::CommDestroyFn comm_destroy = nullptr;
  nccl::AllReduceFn all_reduce = nullptr;
  nccl::BroadcastFn broadcast = nullptr;
  nccl::GroupStartFn group_start = nullptr;
  nccl::GroupEndFn group_end = nullptr;
  nccl::GetErrorStringFn error_string = nullptr;
  nccl::GetLastErrorFn last_error = nullptr;  // NCCL >= 2.13; optional
  nccl::GetVersionFn get_version = nullptr;   // optional
};

NcclApi g_nccl;
std::once_flag g_nccl_once;

template <typename F>
bool resolve(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  if (*out == nullptr) {
    snprintf(g_nccl.error, sizeof(g_nccl.error), "%s does not export %s", g_nccl.path, name);
    return false;
  }
  return true;
}

void load_nccl() {
  static const char* const sonames[] = {"libnccl.so.2", "libnccl.so"};
  const LibrarySpec spec{"NCCL", "VSWIFT_NCCL", sonames, 2, "ncclCommInitRank"};
  void* lib = nullptr;
  if (!open_library(spec, &lib, g_nccl.path, sizeof(g_nccl.path), g_nccl.error, sizeof(g_nccl.error))) return;
  NcclApi& a = g_nccl;
  a.ok = resolve(lib, "ncclGetUniqueId", &a.get_unique_id) && resolve(lib, "ncclCommInitRank", &a.comm_init_rank) &&
         resolve(lib, "ncclCommDestroy", &a.comm_destroy) && resolve(lib, "ncclAllReduce", &a.all_reduce) &&
         resolve(lib, "ncclBroadcast", &a.broadcast) && resolve(lib, "ncclGroupStart", &a.group_start) &&
         resolve(lib, "ncclGroupEnd", &a.group_end) && resolve(lib, "ncclGetErrorString", &a.error_string);
  a.last_error = reinterpret_cast<nccl::GetLastErrorFn>(dlsym(lib, "ncclGetLastError"));
  a.get_version = reinterpret_cast<nccl::GetVersionFn>(dlsym(lib, "ncclGetVersion"));
}

int api(const char* fn, const NcclApi** out) {
  std::call_once(g_nccl_once, load_nccl);
  if (!g_nccl.ok) return vs_fail(VS_ERR_LIBRARY, "%s: %s", fn, g_nccl.error);
  *out = &g_nccl;
  return VS_OK;
}

int check(const char* fn, const char* what, nccl::Result r, nccl::Comm comm) {
  if (r == nccl::kSuccess) return VS_OK;
  const char* text = g_nccl.error_string ? g_nccl.error_string(r) : "unknown";
  const char* detail = g_nccl.last_error ? g_nccl.last_error(comm) : nullptr;
  return vs_fail(VS_ERR_NCCL, "%s: %s failed: %s (%d)%s%s", fn, what, text ? text : "unknown", r,
                 detail && detail[0] ? ": " : "", detail && detail[0] ? detail : "");
}

int nccl_dtype(const char* fn, int dtype, nccl::DataType* out) {
  switch (dtype) {
    case VS_F32: *out = nccl::kFloat32; return VS_OK;
    case VS_BF16: *out = nccl::kBfloat16; return VS_OK;
    case VS_I32: *out = nccl::kInt32; return VS_OK;
    case VS_U8: *out = nccl::kUint8; return VS_OK;
    default: return vs_fail(VS_ERR_DTYPE, "%s: unknown dtype %d", fn, dtype);
  }
}

}  // namespace
}  // namespace vsw

using namespace vsw;

int vs_nccl_available(void) {
  std::call_once(g_nccl_once, load_nccl);
  return g_nccl.ok ? 1 : 0;
}

int vs_nccl_unique_id(uint8_t* id) {
  static const char* fn = "vs_nccl_unique_id";
  VSW_TRY(check_ptr(fn, "id", id));
  const NcclApi* a = nullptr;
  VSW_TRY(api(fn, &a));
  nccl::UniqueId uid;
  memset(&uid, 0, sizeof(uid));
  VSW_TRY(check(fn, "ncclGetUniqueId", a->get_unique_id(&uid), nullptr));
  memcpy(id, uid.internal, nccl::kUniqueIdBytes);
  return VS_OK;
}

int vs_nccl_comm_init(void** comm, int nranks, const uint8_t* id, int rank) {
  static const char* fn = "vs_nccl_comm_init";
  VSW_TRY(check_ptr(fn, "comm", comm));
  VSW_TRY(check_ptr(fn, "id", id));
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    return vs_fail(VS_ERR_ARG, "%s: rank %d of nranks %d is out of range", fn, rank, nranks);
  }
  const NcclApi* a = nullptr;
  VSW_TRY(api(fn, &a));
  nccl::UniqueId uid;
  memcpy(uid.internal, id, nccl::kUniqueIdBytes);
  // NCCL binds the communicator to the device current on this thread (vs_init selects it).
  nccl::Comm c = nullptr;
  VSW_TRY(check(fn, "ncclCommInitRank", a->comm_init_rank(&c, nranks, uid, rank), nullptr));
  *comm = c;
  return VS_OK;
}

int vs_nccl_comm_destroy(void* comm) {
  static const char* fn = "vs_nccl_comm_destroy";
  if (comm == nullptr) return VS_OK;
  const NcclApi* a = nullptr;
  VSW_TRY(api(fn, &a));
  return check(fn, "ncclCommDestroy", a->comm_destroy(static_cast<nccl::Comm>(comm)), nullptr);
}

int vs_nccl_all_reduce(void* comm, int dtype, int64_t count, const void* send, void* recv, int op, vs_stream stream) {
  static const char* fn = "vs_nccl_all_reduce";
  VSW_TRY(check_ptr(fn, "comm", comm));
  nccl::DataType dt = nccl::kFloat32;
  VSW_TRY(nccl_dtype(fn, dtype, &dt));
  VSW_TRY(check_size(fn, "count", count));
  if (op != 0 && op != 1) return vs_fail(VS_ERR_ARG, "%s: op = %d must be 0 (sum) or 1 (average)", fn, op);
  if (op == 1 && dtype != VS_F32 && dtype != VS_BF16) {
    return vs_fail(VS_ERR_DTYPE, "%s: average needs a float dtype, got %s", fn, dtype_name(dtype));
  }
  if (count > 0) {
    VSW_TRY(check_ptr(fn, "send", send));
    VSW_TRY(check_ptr(fn, "recv", recv));
  }
  const NcclApi* a = nullptr;
  VSW_TRY(api(fn, &a));
  nccl::Comm c = static_cast<nccl::Comm>(comm);
  // Called even for count 0: every rank must take part in the same sequence of collectives.
  return check(fn, "ncclAllReduce",
               a->all_reduce(send, recv, size_t(count), dt, op == 1 ? nccl::kAvg : nccl::kSum, c, as_stream(stream)),
               c);
}

int vs_nccl_broadcast(void* comm, int dtype, int64_t count, const void* send, void* recv, int root, vs_stream stream) {
  static const char* fn = "vs_nccl_broadcast";
  VSW_TRY(check_ptr(fn, "comm", comm));
  nccl::DataType dt = nccl::kFloat32;
  VSW_TRY(nccl_dtype(fn, dtype, &dt));
  VSW_TRY(check_size(fn, "count", count));
  if (root < 0) return vs_fail(VS_ERR_ARG, "%s: root = %d must not be negative", fn, root);
  if (count > 0) VSW_TRY(check_ptr(fn, "recv", recv));  // send matters on the root only (NCCL checks it)
  const NcclApi* a = nullptr;
  VSW_TRY(api(fn, &a));
  nccl::Comm c = static_cast<nccl::Comm>(comm);
  return check(fn, "ncclBroadcast", a->broadcast(send, recv, size_t(count), dt, root, c, as_stream(stream)), c);
}

int vs_nccl_group_start(void) {
  static const char* fn = "vs_nccl_group_start";
  const NcclApi* a = nullptr;
  VSW_TRY(api(fn, &a));
  return check(fn, "ncclGroupStart", a->group_start(), nullptr);
}

int vs_nccl_group_end(void) {
  static const char* fn = "vs_nccl_group_end";
  const NcclApi* a = nullptr;
  VSW_TRY(api(fn, &a));
  return check(fn, "ncclGroupEnd", a->group_end(), nullptr);
}
