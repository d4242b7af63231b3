// The execution engine: a kernel's blocks run one after another on the calling OS thread, each block's
// threads as fibers. A fiber runs until it must wait (for __syncthreads, or for its warp at a
// warp-synchronous operation) or ends; the scheduler then resumes the others, in a fresh pseudo-random
// order every round, so that a missing barrier shows up as a read of unwritten (NaN-poisoned) shared
// memory rather than being hidden by a fixed order.
#include <cxxabi.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <string>
#include <vector>

#include "fiber.h"
#include "memory.h"
#include "vsim.h"

namespace vsim {

// runtime.cpp: shared-memory opt-in limit of the simulated device, and the sticky launch error.
size_t smem_optin_limit();
void record_launch_error(cudaError_t e);
size_t func_smem_optin(const void* fn);

namespace {

constexpr size_t kStackBytes = 256 << 10;
constexpr size_t kSmemWindow = 512 << 10;      // static below dynamic, the whole region against the top guard
constexpr size_t kStaticDefaultLimit = 48 << 10;

enum State { kRun, kBarrier, kWarp, kDone };

struct Pending {
  unsigned char* dst;
  const void* src;
  uint32_t size, src_bytes;
  int group;
};

struct Fiber {
  void* sp = nullptr;
  char* stack = nullptr;
  State state = kRun;
  uint3 tid{0, 0, 0};
  int lin = 0;
  uint32_t wseq = 0;        // warp-synchronous operations done
  std::vector<Pending> pending;
  int committed = 0;        // cp.async groups committed
  const char* wait_op = "";
};

struct Warp {
  uint32_t slot[2][32][16];
  const char* op[2][32];
  unsigned mask[2][32];
};

struct Engine {
  // Per OS thread, reused across launches.
  std::vector<Fiber> fibers;
  char* stacks = nullptr;
  size_t n_stacks = 0;
  unsigned char* smem = nullptr;  // kSmemWindow bytes followed by a guard page
  std::vector<Warp> warps;
  std::vector<int> order;
  void* main_sp = nullptr;

  // The launch in progress.
  const char* kernel = "";
  LaunchCfg cfg{};
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  uint3 block{0, 0, 0};
  size_t dyn_bytes = 0;
  unsigned char* dyn = nullptr;
  size_t static_bottom = 0;  // static variables fill [static_bottom, dyn) downwards, first declared on top
  size_t static_limit = 0;
  std::vector<std::pair<const void*, size_t>> statics;
  Fiber* cur = nullptr;
  bool failed = false;
  cudaError_t error = cudaSuccess;
  uint64_t rng = 0;
  bool in_kernel = false;
};

thread_local Engine t_engine;
thread_local char t_detail[2048] = "";
thread_local char t_kernel_name[512] = "";

struct sigaction g_old_segv, g_old_bus;
bool g_handlers = false;

Engine& eng() { return t_engine; }

void fiber_entry();

bool ensure_stacks(Engine& e, size_t n) {
  if (e.n_stacks >= n) return true;
  const size_t pg = page_size();
  const size_t slot = kStackBytes + pg;
  if (e.stacks) munmap(e.stacks, e.n_stacks * slot);
  void* m = mmap(nullptr, n * slot, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    e.stacks = nullptr;
    e.n_stacks = 0;
    return false;
  }
  e.stacks = static_cast<char*>(m);
  for (size_t i = 0; i < n; ++i) mprotect(e.stacks + i * slot, pg, PROT_NONE);  // overflow guard
  e.n_stacks = n;
  return true;
}

bool ensure_smem(Engine& e) {
  if (e.smem) return true;
  void* m = mmap(nullptr, kSmemWindow + page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  mprotect(static_cast<char*>(m) + kSmemWindow, page_size(), PROT_NONE);
  e.smem = static_cast<unsigned char*>(m);
  return true;
}

uint64_t next_rand(Engine& e) {
  e.rng ^= e.rng << 13;
  e.rng ^= e.rng >> 7;
  e.rng ^= e.rng << 17;
  return e.rng;
}

// Where the calling thread is, for messages.
int where(char* buf, size_t len) {
  Engine& e = eng();
  if (e.cur == nullptr) return snprintf(buf, len, "kernel %s, block (%u,%u,%u)", e.kernel, e.block.x, e.block.y, e.block.z);
  return snprintf(buf, len, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)", e.kernel, e.block.x, e.block.y,
                  e.block.z, e.cur->tid.x, e.cur->tid.y, e.cur->tid.z);
}

// Ends the calling fiber's part in the launch: the block is abandoned, the scheduler reports.
[[noreturn]] void abort_fiber(cudaError_t code) {
  Engine& e = eng();
  e.failed = true;
  e.error = code;
  Fiber* f = e.cur;
  f->state = kDone;
  vsim_switch(&f->sp, e.main_sp);
  abort();  // never resumed
}

thread_local bool t_in_fault = false;

void on_fault(int sig, siginfo_t* info, void* uctx) {
  Engine& e = eng();
  if (e.in_kernel && e.cur != nullptr && !t_in_fault) {
    t_in_fault = true;
    char what[512];
    const uintptr_t a = reinterpret_cast<uintptr_t>(info->si_addr);
    const uintptr_t s0 = reinterpret_cast<uintptr_t>(e.smem);
    if (e.smem && a >= s0 + kSmemWindow && a < s0 + kSmemWindow + page_size()) {
      snprintf(what, sizeof(what),
               "shared memory access past the end of the block's shared memory (%zu bytes static, %zu dynamic)",
               size_t(e.dyn - e.smem) - e.static_bottom, e.dyn_bytes);
    } else if (!describe_fault(info->si_addr, what, sizeof(what))) {
      if (sig == SIGSEGV && info->si_addr == nullptr) {
        snprintf(what, sizeof(what), "invalid memory access (a misaligned vector access or a null pointer)");
      } else {
        snprintf(what, sizeof(what), "invalid memory access at %p (not device memory)", info->si_addr);
      }
    }
    char loc[700];
    where(loc, sizeof(loc));
    snprintf(t_detail, sizeof(t_detail), "%s: %s", loc, what);
    t_in_fault = false;
    abort_fiber(cudaErrorIllegalAddress);
  }
  const struct sigaction& old = sig == SIGBUS ? g_old_bus : g_old_segv;
  if (old.sa_flags & SA_SIGINFO) {
    if (old.sa_sigaction) old.sa_sigaction(sig, info, uctx);
    return;
  }
  if (old.sa_handler == SIG_IGN) return;
  if (old.sa_handler == SIG_DFL || old.sa_handler == nullptr) {
    signal(sig, SIG_DFL);  // re-raised by the faulting instruction
    return;
  }
  old.sa_handler(sig);
}

void install_handlers() {
  if (g_handlers) return;
  g_handlers = true;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fault;
  // On the faulting fiber's own (large) stack: the alternate signal stacks of runtime threads are a few
  // KiB, too small for the report.
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_old_segv);
  sigaction(SIGBUS, &sa, &g_old_bus);
}

const char* kernel_name(const void* fn, const char* expr) {
  Dl_info info;
  if (dladdr(fn, &info) && info.dli_sname && info.dli_saddr == fn) {
    int st = 0;
    char* d = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &st);
    snprintf(t_kernel_name, sizeof(t_kernel_name), "%s", st == 0 && d ? d : info.dli_sname);
    free(d);
    return t_kernel_name;
  }
  snprintf(t_kernel_name, sizeof(t_kernel_name), "%s", expr);
  return t_kernel_name;
}

void land(Fiber& f, int keep_groups) {
  // Copies of the groups older than the newest `keep_groups` committed ones land now.
  const int limit = f.committed - keep_groups;
  size_t w = 0;
  for (size_t i = 0; i < f.pending.size(); ++i) {
    Pending& p = f.pending[i];
    if (p.group < limit) {
      if (p.src_bytes) memcpy(p.dst, p.src, p.src_bytes);
      if (p.src_bytes < p.size) memset(p.dst + p.src_bytes, 0, p.size - p.src_bytes);
    } else {
      f.pending[w++] = p;
    }
  }
  f.pending.resize(w);
}

void fiber_entry() {
  Engine& e = eng();
  e.body(e.ctx);
  Fiber* f = e.cur;
  // Copies never waited for still land (the hardware completes them); uncommitted ones too.
  f->committed += 1;
  land(*f, 0);
  f->state = kDone;
  vsim_switch(&f->sp, e.main_sp);
  abort();
}

// Releases waiting threads; false when no thread can go on (a deadlock, recorded as an error).
bool release(Engine& e, int n) {
  const int nwarps = (n + 31) / 32;
  bool any = false;
  int live = 0, at_barrier = 0;
  for (int w = 0; w < nwarps; ++w) {
    int waiting = 0, live_lanes = 0;
    unsigned mask = 0;
    const char* op = nullptr;
    for (int l = 0; l < 32; ++l) {
      const int i = w * 32 + l;
      if (i >= n || e.fibers[i].state == kDone) continue;
      ++live_lanes;
      if (e.fibers[i].state == kWarp) {
        ++waiting;
        const Fiber& f = e.fibers[i];
        const int par = (f.wseq - 1) & 1;
        mask = e.warps[w].mask[par][l];
        op = e.warps[w].op[par][l];
      }
    }
    live += live_lanes;
    if (waiting == 0 || waiting < live_lanes) continue;
    // Every live lane of the warp waits at a warp operation: every lane of its mask must be there.
    for (int l = 0; l < 32; ++l) {
      if (!((mask >> l) & 1u)) continue;
      const int i = w * 32 + l;
      if (i >= n || e.fibers[i].state == kDone) {
        snprintf(t_detail, sizeof(t_detail),
                 "kernel %s, block (%u,%u,%u), warp %d: %s with mask 0x%08x, but lane %d has %s (undefined "
                 "behaviour on a GPU)",
                 e.kernel, e.block.x, e.block.y, e.block.z, w, op, mask, l, i >= n ? "no thread" : "exited");
        e.failed = true;
        e.error = cudaErrorLaunchFailure;
        return false;
      }
    }
    for (int l = 0; l < 32; ++l) {
      const int i = w * 32 + l;
      if (i < n && e.fibers[i].state == kWarp) e.fibers[i].state = kRun;
    }
    any = true;
  }
  if (any) return true;
  for (int i = 0; i < n; ++i) {
    if (e.fibers[i].state == kBarrier) ++at_barrier;
  }
  if (live > 0 && at_barrier == live) {
    for (int i = 0; i < n; ++i) {
      if (e.fibers[i].state == kBarrier) e.fibers[i].state = kRun;
    }
    return true;
  }
  if (live == 0) return true;
  // Some threads wait at __syncthreads while others of their warps wait at a warp operation.
  int wi = -1;
  for (int i = 0; i < n && wi < 0; ++i) {
    if (e.fibers[i].state == kWarp) wi = i;
  }
  snprintf(t_detail, sizeof(t_detail),
           "kernel %s, block (%u,%u,%u): deadlock, %d of %d live threads wait at __syncthreads while thread %d "
           "waits for its warp at %s",
           e.kernel, e.block.x, e.block.y, e.block.z, at_barrier, live, wi, wi >= 0 ? e.fibers[wi].wait_op : "?");
  e.failed = true;
  e.error = cudaErrorLaunchFailure;
  return false;
}

bool run_block(Engine& e, int n) {
  e.statics.clear();
  // The block's shared memory ends against the guard page: dynamic on top, static variables below it (as
  // the hardware puts static first), so that running off the end of either faults at the access. Poisoned
  // with NaN bytes.
  const size_t dyn_round = (e.dyn_bytes + 127) & ~size_t(127);
  e.dyn = e.smem + kSmemWindow - dyn_round;
  e.static_bottom = kSmemWindow - dyn_round;
  memset(e.dyn, 0xff, dyn_round);
  for (int i = 0; i < n; ++i) {
    Fiber& f = e.fibers[i];
    f.state = kRun;
    f.wseq = 0;
    f.pending.clear();
    f.committed = 0;
    f.sp = fiber_prepare(f.stack, kStackBytes, fiber_entry);
  }
  int live = n;
  while (live > 0) {
    // A fresh order every round (Fisher-Yates on the engine's generator).
    for (int i = n - 1; i > 0; --i) {
      const int j = int(next_rand(e) % uint64_t(i + 1));
      std::swap(e.order[i], e.order[j]);
    }
    for (int k = 0; k < n; ++k) {
      Fiber& f = e.fibers[e.order[k]];
      if (f.state != kRun) continue;
      e.cur = &f;
      vsim_switch(&e.main_sp, f.sp);
      e.cur = nullptr;
      if (e.failed) return false;
    }
    live = 0;
    for (int i = 0; i < n; ++i) live += e.fibers[i].state != kDone;
    if (live > 0 && !release(e, n)) return false;
  }
  return true;
}

}  // namespace

const char* last_detail() { return t_detail; }

void set_detail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_detail, sizeof(t_detail), fmt, ap);
  va_end(ap);
}

cudaError_t run_kernel(const void* fn, const char* expr, const LaunchCfg& cfg, void (*body)(void*), void* ctx) {
  Engine& e = eng();
  const char* name = kernel_name(fn, expr);
  if (e.in_kernel) {
    set_detail("kernel %s: launched from inside kernel %s (dynamic parallelism is not simulated)", name, e.kernel);
    record_launch_error(cudaErrorLaunchFailure);
    return cudaErrorLaunchFailure;
  }
  const uint64_t threads = uint64_t(cfg.block.x) * cfg.block.y * cfg.block.z;
  if (threads == 0 || threads > 1024 || cfg.block.z > 64 || cfg.grid.x == 0 || cfg.grid.y == 0 || cfg.grid.z == 0 ||
      cfg.grid.y > 65535 || cfg.grid.z > 65535 || cfg.grid.x > 0x7fffffffu) {
    set_detail("kernel %s: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)", name, cfg.grid.x,
               cfg.grid.y, cfg.grid.z, cfg.block.x, cfg.block.y, cfg.block.z);
    record_launch_error(cudaErrorInvalidConfiguration);
    return cudaErrorInvalidConfiguration;
  }
  const size_t optin = func_smem_optin(fn);
  if (cfg.smem > kStaticDefaultLimit && cfg.smem > optin) {
    set_detail("kernel %s: %zu bytes of dynamic shared memory requested, but the kernel opted in to %zu "
               "(cudaFuncSetAttribute(MaxDynamicSharedMemorySize)); without it the limit is 48 KiB",
               name, cfg.smem, optin);
    record_launch_error(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  if (cfg.smem > smem_optin_limit()) {
    set_detail("kernel %s: %zu bytes of dynamic shared memory exceed the device's %zu", name, cfg.smem,
               smem_optin_limit());
    record_launch_error(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  const int n = int(threads);
  if (!ensure_stacks(e, size_t(n)) || !ensure_smem(e)) {
    set_detail("kernel %s: cannot map fiber stacks for %d threads", name, n);
    record_launch_error(cudaErrorMemoryAllocation);
    return cudaErrorMemoryAllocation;
  }
  install_handlers();
  if (e.fibers.size() < size_t(n)) e.fibers.resize(size_t(n));
  e.warps.resize(size_t((n + 31) / 32));
  e.order.resize(size_t(n));
  for (int i = 0; i < n; ++i) {
    Fiber& f = e.fibers[i];
    // Each stack slot: a guard page, then the stack (as ensure_stacks lays them out).
    f.stack = e.stacks + size_t(i) * (kStackBytes + page_size()) + page_size();
    f.lin = i;
    f.tid = uint3{unsigned(i % cfg.block.x), unsigned((i / cfg.block.x) % cfg.block.y),
                  unsigned(i / (cfg.block.x * cfg.block.y))};
    e.order[i] = i;
  }
  e.kernel = name;
  e.cfg = cfg;
  e.body = body;
  e.ctx = ctx;
  e.dyn_bytes = cfg.smem;
  e.static_limit = smem_optin_limit() - cfg.smem < kStaticDefaultLimit ? smem_optin_limit() - cfg.smem
                                                                        : kStaticDefaultLimit;
  e.failed = false;
  e.error = cudaSuccess;
  static thread_local uint64_t launches = 0;
  e.rng = 0x9e3779b97f4a7c15ull ^ (++launches * 0xbf58476d1ce4e5b9ull);
  e.in_kernel = true;
  bool ok = true;
  for (unsigned z = 0; z < cfg.grid.z && ok; ++z) {
    for (unsigned y = 0; y < cfg.grid.y && ok; ++y) {
      for (unsigned x = 0; x < cfg.grid.x && ok; ++x) {
        e.block = uint3{x, y, z};
        ok = run_block(e, n);
      }
    }
  }
  e.in_kernel = false;
  if (!ok) {
    record_launch_error(e.error);
    return e.error;
  }
  std::string why;
  if (!check_canaries(&why)) {
    set_detail("kernel %s: %s (found after the kernel ended)", name, why.c_str());
    record_launch_error(cudaErrorIllegalAddress);
    return cudaErrorIllegalAddress;
  }
  return cudaSuccess;
}

const uint3& thread_idx() { return eng().cur->tid; }
const uint3& block_idx() { return eng().block; }
const dim3& block_dim() { return eng().cfg.block; }
const dim3& grid_dim() { return eng().cfg.grid; }

int lane_id() { return eng().cur->lin & 31; }

void syncthreads() {
  Engine& e = eng();
  Fiber* f = e.cur;
  f->state = kBarrier;
  f->wait_op = "__syncthreads";
  vsim_switch(&f->sp, e.main_sp);
}

const uint32_t* warp_exchange(const char* op, unsigned mask, const uint32_t* mine, int words) {
  Engine& e = eng();
  Fiber* f = e.cur;
  const int lane = f->lin & 31;
  if (!((mask >> lane) & 1u)) kernel_error(cudaErrorLaunchFailure, "%s with mask 0x%08x excludes the calling lane %d", op, mask, lane);
  Warp& w = e.warps[f->lin >> 5];
  const int par = f->wseq & 1;
  if (words) memcpy(w.slot[par][lane], mine, size_t(words) * 4);
  w.op[par][lane] = op;
  w.mask[par][lane] = mask;
  f->wseq += 1;
  f->state = kWarp;
  f->wait_op = op;
  vsim_switch(&f->sp, e.main_sp);
  // Every lane of the mask arrived: they must all be at the same kind of operation with the same mask.
  for (int l = 0; l < 32; ++l) {
    if (!((mask >> l) & 1u)) continue;
    if (w.op[par][l] != op || w.mask[par][l] != mask) {
      kernel_error(cudaErrorLaunchFailure, "lanes of warp %d meet at different warp operations: %s (mask 0x%08x) and %s (mask 0x%08x) by lane %d",
                   f->lin >> 5, op, mask, w.op[par][l], w.mask[par][l], l);
    }
  }
  return &w.slot[par][0][0];
}

void kernel_error(cudaError_t code, const char* fmt, ...) {
  char loc[700];
  where(loc, sizeof(loc));
  char what[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  snprintf(t_detail, sizeof(t_detail), "%s: %s", loc, what);
  abort_fiber(code);
}

void* dynamic_smem() { return eng().dyn; }

void launch_bounds(long long max_threads) {
  const dim3& b = eng().cfg.block;
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  if (max_threads > 0 && threads > static_cast<unsigned long long>(max_threads)) {
    kernel_error(cudaErrorLaunchOutOfResources,
                 "launch of (%u,%u,%u) = %llu threads per block, more than the kernel's __launch_bounds__(%lld) "
                 "(too many resources requested for launch)",
                 b.x, b.y, b.z, threads, max_threads);
  }
}

void* static_smem(const void* tag, size_t bytes, size_t align) {
  Engine& e = eng();
  for (const auto& s : e.statics) {
    if (s.first == tag) return e.smem + s.second;
  }
  // Below the variables placed so far: the first one met ends where dynamic memory (or the guard) starts.
  const size_t top = size_t(e.dyn - e.smem);
  const size_t off = e.static_bottom < bytes ? 0 : (e.static_bottom - bytes) / align * align;
  if (e.static_bottom < bytes || top - off > e.static_limit) {
    kernel_error(cudaErrorLaunchOutOfResources,
                 "static shared memory of %zu bytes plus %zu of dynamic exceeds the limit (%zu bytes static here)",
                 top - off, e.dyn_bytes, e.static_limit);
  }
  memset(e.smem + off, 0xff, bytes);
  e.static_bottom = off;
  e.statics.emplace_back(tag, off);
  return e.smem + off;
}

uint32_t shared_address(const void* p) {
  Engine& e = eng();
  const unsigned char* c = static_cast<const unsigned char*>(p);
  if (c < e.smem || c >= e.smem + kSmemWindow) {
    kernel_error(cudaErrorIllegalAddress, "cvta.to.shared of %p, which is not shared memory", p);
  }
  return uint32_t(c - e.smem);
}

void* shared_ptr(uint32_t addr, size_t bytes, size_t align, const char* op) {
  Engine& e = eng();
  if (addr % align != 0) {
    kernel_error(cudaErrorMisalignedAddress, "%s at shared address 0x%x is not %zu-byte aligned", op, addr, align);
  }
  const size_t dyn0 = size_t(e.dyn - e.smem);
  const bool in_static = addr >= e.static_bottom && size_t(addr) + bytes <= dyn0;
  const bool in_dyn = addr >= dyn0 && size_t(addr) + bytes <= dyn0 + e.dyn_bytes;
  if (!in_static && !in_dyn) {
    kernel_error(cudaErrorIllegalAddress,
                 "%s of %zu bytes at shared address 0x%x is outside the block's shared memory (static [0x%zx, 0x%zx), "
                 "dynamic [0x%zx, 0x%zx))",
                 op, bytes, addr, e.static_bottom, dyn0, dyn0, dyn0 + e.dyn_bytes);
  }
  return e.smem + addr;
}

void check_global(const void* p, size_t bytes, size_t align, const char* op) {
  if (reinterpret_cast<uintptr_t>(p) % align != 0) {
    kernel_error(cudaErrorMisalignedAddress, "%s of %zu bytes at %p is not %zu-byte aligned", op, bytes, p, align);
  }
  std::string why;
  if (!device_range_ok(p, bytes, &why)) kernel_error(cudaErrorIllegalAddress, "%s: %s", op, why.c_str());
}

void cp_async(uint32_t dst, const void* src, uint32_t size, uint32_t src_bytes) {
  if (src_bytes > size) {
    kernel_error(cudaErrorLaunchFailure, "cp.async of %u bytes with src-size %u (larger than the copy)", size, src_bytes);
  }
  unsigned char* d = static_cast<unsigned char*>(shared_ptr(dst, size, size, "cp.async (shared destination)"));
  if (src_bytes > 0) check_global(src, src_bytes, size, "cp.async (global source)");
  Fiber* f = eng().cur;
  f->pending.push_back(Pending{d, src, size, src_bytes, f->committed});
}

void cp_async_commit() { eng().cur->committed += 1; }

void cp_async_wait(int pending) { land(*eng().cur, pending); }

}  // namespace vsim
