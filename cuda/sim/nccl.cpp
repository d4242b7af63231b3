// A simulated NCCL: the API subset that cuda/gpu/nccl.cu opens with dlsym, for ranks that are threads
// of one process or processes of one machine. A communicator is a shared-memory segment named by the
// unique id: each rank stages its chunk of a collective in its own slot, the ranks meet at a barrier,
// every rank reduces all slots in rank order (so all ranks get the same bits), and meet again before
// the slots are reused. Collectives are blocking, which the stream order of the simulator allows.
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include <cuda_bf16.h>

#include "../gpu/nccl_api.h"
#include "memory.h"

namespace {

using namespace vsw::nccl;

constexpr size_t kSlotBytes = size_t(8) << 20;
constexpr char kMagic[8] = {'V', 'S', 'I', 'M', 'N', 'C', 'C', 'L'};
constexpr double kTimeoutS = 300.0;

struct Header {
  std::atomic<uint64_t> joined;
  std::atomic<uint64_t> arrived;  // barrier arrivals, monotonic
  std::atomic<uint64_t> failed;   // a rank gave up (timeout): everyone stops
};

struct CommImpl {
  int rank, nranks;
  uint64_t epoch = 0;
  Header* head;
  unsigned char* slots;
  size_t map_len;
  void* map;
  char name[64];
};

thread_local char t_last[1024] = "";

Result fail(Result r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
Result fail(Result r, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_last, sizeof(t_last), fmt, ap);
  va_end(ap);
  return r;
}

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Waits until `counter` reaches `target`; false on timeout or when another rank failed.
bool wait_for(CommImpl* c, std::atomic<uint64_t>& counter, uint64_t target) {
  const double t0 = now_s();
  for (int spin = 0; counter.load(std::memory_order_acquire) < target; ++spin) {
    if (c->head->failed.load()) return false;
    if (spin > 64) {
      if (now_s() - t0 > kTimeoutS) {
        c->head->failed.store(1);
        return false;
      }
      if (spin < 4096) sched_yield();
      else usleep(100);
    }
  }
  return true;
}

bool barrier(CommImpl* c) {
  c->epoch += 1;
  c->head->arrived.fetch_add(1, std::memory_order_acq_rel);
  return wait_for(c, c->head->arrived, c->epoch * uint64_t(c->nranks));
}

int dtype_bytes(DataType t) {
  switch (t) {
    case kUint8: return 1;
    case kInt32: return 4;
    case kFloat32: return 4;
    case kBfloat16: return 2;
  }
  return 0;
}

double get(const unsigned char* p, DataType t, size_t i) {
  switch (t) {
    case kUint8: return p[i];
    case kInt32: return reinterpret_cast<const int32_t*>(p)[i];
    case kFloat32: return reinterpret_cast<const float*>(p)[i];
    default: return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(p)[i]);
  }
}

void put(unsigned char* p, DataType t, size_t i, double v) {
  switch (t) {
    case kUint8: p[i] = (unsigned char)(int64_t(v)); break;
    case kInt32: reinterpret_cast<int32_t*>(p)[i] = int32_t(int64_t(v)); break;
    case kFloat32: reinterpret_cast<float*>(p)[i] = float(v); break;
    default: reinterpret_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(float(v));
  }
}

bool buffer_ok(const char* fn, const char* what, const void* p, size_t bytes) {
  if (bytes == 0) return true;
  std::string why;
  if (vsim::device_range_ok(p, bytes, &why)) return true;
  fail(kInvalidArgument, "%s: %s buffer: %s", fn, what, why.c_str());
  return false;
}

// A collective in slot-sized chunks: stage(start, n) fills this rank's slot, all ranks meet, finish(start,
// n) reads the slots, all ranks meet again before the slots are reused. Count 0 still meets (every rank
// takes part in every collective).
template <typename Stage, typename Finish>
Result staged(CommImpl* c, const char* fn, size_t count, int eb, Stage stage, Finish finish) {
  const size_t per = kSlotBytes / size_t(eb);
  size_t start = 0;
  do {
    const size_t n = count - start < per ? count - start : per;
    stage(start, n);
    if (!barrier(c)) return fail(kRemoteError, "%s: a rank did not arrive within %.0f s", fn, kTimeoutS);
    finish(start, n);
    if (!barrier(c)) return fail(kRemoteError, "%s: a rank did not arrive within %.0f s", fn, kTimeoutS);
    start += n;
  } while (start < count);
  return kSuccess;
}

}  // namespace

extern "C" {

Result ncclGetVersion(int* version) {
  *version = 22105;  // behaves as NCCL 2.21.5 (ncclAvg, ncclBfloat16, ncclGetLastError)
  return kSuccess;
}

Result ncclGetUniqueId(UniqueId* id) {
  memset(id->internal, 0, sizeof(id->internal));
  memcpy(id->internal, kMagic, sizeof(kMagic));
  unsigned char rnd[16];
  FILE* f = fopen("/dev/urandom", "rb");
  if (f == nullptr || fread(rnd, 1, sizeof(rnd), f) != sizeof(rnd)) {
    if (f) fclose(f);
    return fail(kSystemError, "ncclGetUniqueId: cannot read /dev/urandom");
  }
  fclose(f);
  for (int i = 0; i < 16; ++i) snprintf(id->internal + 8 + 2 * i, 3, "%02x", rnd[i]);
  return kSuccess;
}

Result ncclCommInitRank(Comm* comm, int nranks, UniqueId id, int rank) {
  if (memcmp(id.internal, kMagic, sizeof(kMagic)) != 0) {
    return fail(kInvalidArgument, "ncclCommInitRank: the unique id was not made by ncclGetUniqueId");
  }
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    return fail(kInvalidArgument, "ncclCommInitRank: rank %d of %d", rank, nranks);
  }
  CommImpl* c = new CommImpl();
  c->rank = rank;
  c->nranks = nranks;
  snprintf(c->name, sizeof(c->name), "/vswift_sim_nccl_%.32s", id.internal + 8);
  c->map_len = 4096 + size_t(nranks) * kSlotBytes;
  const int fd = shm_open(c->name, O_CREAT | O_RDWR, 0600);
  if (fd < 0 || ftruncate(fd, off_t(c->map_len)) != 0) {
    if (fd >= 0) close(fd);
    delete c;
    return fail(kSystemError, "ncclCommInitRank: cannot create the shared segment %s", c->name);
  }
  c->map = mmap(nullptr, c->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (c->map == MAP_FAILED) {
    delete c;
    return fail(kSystemError, "ncclCommInitRank: cannot map the shared segment");
  }
  c->head = static_cast<Header*>(c->map);
  c->slots = static_cast<unsigned char*>(c->map) + 4096;
  const uint64_t me = c->head->joined.fetch_add(1) + 1;
  if (!wait_for(c, c->head->joined, uint64_t(nranks))) {
    shm_unlink(c->name);
    munmap(c->map, c->map_len);
    delete c;
    return fail(kRemoteError, "ncclCommInitRank: not all %d ranks joined within %.0f s", nranks, kTimeoutS);
  }
  if (me == uint64_t(nranks)) shm_unlink(c->name);  // every rank has it mapped: the name can go
  *comm = reinterpret_cast<Comm>(c);
  return kSuccess;
}

Result ncclCommDestroy(Comm comm) {
  CommImpl* c = reinterpret_cast<CommImpl*>(comm);
  if (c == nullptr) return fail(kInvalidArgument, "ncclCommDestroy: NULL communicator");
  munmap(c->map, c->map_len);
  delete c;
  return kSuccess;
}

Result ncclAllReduce(const void* send, void* recv, size_t count, DataType dtype, RedOp op, Comm comm,
                     cudaStream_t stream) {
  static const char* fn = "ncclAllReduce";
  CommImpl* c = reinterpret_cast<CommImpl*>(comm);
  const int eb = dtype_bytes(dtype);
  if (c == nullptr || eb == 0 || (op != kSum && op != kAvg)) {
    return fail(kInvalidArgument, "%s: communicator %p, dtype %d, op %d", fn, (void*)c, dtype, op);
  }
  if (!buffer_ok(fn, "send", send, count * eb) || !buffer_ok(fn, "recv", recv, count * eb)) return kInvalidArgument;
  const bool fl = dtype == kFloat32 || dtype == kBfloat16;
  return staged(c, fn, count, eb, [&](size_t start, size_t n) {
    memcpy(c->slots + size_t(c->rank) * kSlotBytes, static_cast<const unsigned char*>(send) + start * eb, n * eb);
  }, [&](size_t start, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      // Rank order, in the element type's own arithmetic for floats (f32 adds), as a ring would give.
      float f = 0.0f;
      double d = 0.0;
      for (int r = 0; r < c->nranks; ++r) {
        const double v = get(c->slots + size_t(r) * kSlotBytes, dtype, i);
        f += float(v);
        d += v;
      }
      double v = fl ? double(f) : d;
      if (op == kAvg) v = fl ? double(float(v) / float(c->nranks)) : v / c->nranks;
      put(static_cast<unsigned char*>(recv) + start * eb, dtype, i, v);
    }
  });
}

Result ncclBroadcast(const void* send, void* recv, size_t count, DataType dtype, int root, Comm comm,
                     cudaStream_t stream) {
  static const char* fn = "ncclBroadcast";
  CommImpl* c = reinterpret_cast<CommImpl*>(comm);
  const int eb = dtype_bytes(dtype);
  if (c == nullptr || eb == 0 || root < 0 || root >= (c ? c->nranks : 0)) {
    return fail(kInvalidArgument, "%s: communicator %p, dtype %d, root %d", fn, (void*)c, dtype, root);
  }
  if ((c->rank == root && !buffer_ok(fn, "send", send, count * eb)) || !buffer_ok(fn, "recv", recv, count * eb)) {
    return kInvalidArgument;
  }
  unsigned char* slot = c->slots + size_t(root) * kSlotBytes;
  return staged(c, fn, count, eb, [&](size_t start, size_t n) {
    if (c->rank == root) memcpy(slot, static_cast<const unsigned char*>(send) + start * eb, n * eb);
  }, [&](size_t start, size_t n) { memcpy(static_cast<unsigned char*>(recv) + start * eb, slot, n * eb); });
}

// Groups only batch launches; with blocking collectives and one communicator per thread, the calls
// inside a group run in order, as the same sequence does on every rank.
thread_local int t_group_depth = 0;
Result ncclGroupStart(void) {
  ++t_group_depth;
  return kSuccess;
}
Result ncclGroupEnd(void) {
  if (t_group_depth == 0) return fail(kInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  --t_group_depth;
  return kSuccess;
}

const char* ncclGetErrorString(Result r) {
  switch (r) {
    case kSuccess: return "no error";
    case kUnhandledCudaError: return "unhandled cuda error";
    case kSystemError: return "unhandled system error";
    case kInternalError: return "internal error";
    case kInvalidArgument: return "invalid argument";
    case kInvalidUsage: return "invalid usage";
    case kRemoteError: return "remote process exited or there was a network error";
  }
  return "unknown result code";
}

const char* ncclGetLastError(Comm comm) { return t_last; }

}  // extern "C"
