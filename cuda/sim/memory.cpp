// Simulated device memory (memory.h).
#include "memory.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <mutex>

namespace vsim {

size_t page_size() {
  static const size_t p = size_t(sysconf(_SC_PAGESIZE));
  return p;
}

namespace {

constexpr unsigned char kCanary = 0xa5;
constexpr size_t kQuarantine = 4096;  // freed mappings kept inaccessible before they are unmapped

struct Alloc {
  uintptr_t map;   // mapping start (a guard page, then data pages, then a guard page)
  size_t map_len;
  uintptr_t ptr;   // what cudaMalloc returned: 256-byte aligned, ending within 255 bytes of the guard
  size_t size;     // bytes asked for
  bool live;
};

std::mutex g_mu;
std::map<uintptr_t, Alloc> g_by_map;  // keyed by mapping start, live and quarantined
std::deque<uintptr_t> g_freed;        // quarantine order
size_t g_in_use = 0;

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

// The allocation whose mapping contains addr (caller holds g_mu).
const Alloc* find(uintptr_t addr) {
  auto it = g_by_map.upper_bound(addr);
  if (it == g_by_map.begin()) return nullptr;
  --it;
  const Alloc& a = it->second;
  return addr < a.map + a.map_len ? &a : nullptr;
}

void fill_canaries(const Alloc& a) {
  const uintptr_t data = a.map + page_size(), data_end = a.map + a.map_len - page_size();
  memset(reinterpret_cast<void*>(data), kCanary, a.ptr - data);
  memset(reinterpret_cast<void*>(a.ptr + a.size), kCanary, data_end - (a.ptr + a.size));
}

}  // namespace

void* device_alloc(size_t bytes) {
  const size_t pg = page_size();
  const size_t rounded = round_up(bytes == 0 ? 1 : bytes, 256);
  const size_t data = round_up(rounded, pg);
  const size_t len = data + 2 * pg;
  void* m = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  const uintptr_t map = reinterpret_cast<uintptr_t>(m);
  if (mprotect(reinterpret_cast<void*>(map + pg), data, PROT_READ | PROT_WRITE) != 0) {
    munmap(m, len);
    return nullptr;
  }
  Alloc a{map, len, map + pg + data - rounded, bytes, true};
  fill_canaries(a);
  std::lock_guard<std::mutex> lock(g_mu);
  g_by_map[map] = a;
  g_in_use += bytes;
  return reinterpret_cast<void*>(a.ptr);
}

bool device_free(void* p, std::string* why) {
  std::lock_guard<std::mutex> lock(g_mu);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  const Alloc* found = find(addr);
  if (found == nullptr || found->ptr != addr) {
    char buf[160];
    snprintf(buf, sizeof(buf), "%p is not the start of a device allocation", p);
    *why = buf;
    return false;
  }
  Alloc& a = g_by_map[found->map];
  if (!a.live) {
    char buf[160];
    snprintf(buf, sizeof(buf), "%p (%zu bytes) was already freed", p, a.size);
    *why = buf;
    return false;
  }
  a.live = false;
  g_in_use -= a.size;
  madvise(reinterpret_cast<void*>(a.map), a.map_len, MADV_DONTNEED);
  mprotect(reinterpret_cast<void*>(a.map), a.map_len, PROT_NONE);
  g_freed.push_back(a.map);
  if (g_freed.size() > kQuarantine) {
    const uintptr_t old = g_freed.front();
    g_freed.pop_front();
    auto it = g_by_map.find(old);
    munmap(reinterpret_cast<void*>(old), it->second.map_len);
    g_by_map.erase(it);
  }
  return true;
}

bool device_range_ok(const void* p, size_t bytes, std::string* why) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_mu);
  const Alloc* a = find(addr);
  char buf[256];
  if (a == nullptr) {
    snprintf(buf, sizeof(buf), "%p is not in any device allocation", p);
  } else if (!a->live) {
    snprintf(buf, sizeof(buf), "%p is in a freed allocation of %zu bytes at %p (use after free)", p, a->size,
             reinterpret_cast<void*>(a->ptr));
  } else if (addr < a->ptr) {
    snprintf(buf, sizeof(buf), "%p is %zu bytes before the allocation of %zu bytes at %p", p, size_t(a->ptr - addr),
             a->size, reinterpret_cast<void*>(a->ptr));
  } else if (addr + bytes > a->ptr + a->size) {
    snprintf(buf, sizeof(buf), "%zu bytes at %p end %zu bytes past the allocation of %zu bytes at %p", bytes, p,
             size_t(addr + bytes - (a->ptr + a->size)), a->size, reinterpret_cast<void*>(a->ptr));
  } else {
    return true;
  }
  *why = buf;
  return false;
}

bool describe_fault(const void* addr, char* buf, size_t len) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(addr);
  // No lock: called from a signal handler on the thread that may hold none (kernels never allocate).
  const Alloc* a = find(x);
  if (a == nullptr) return false;
  if (!a->live) {
    snprintf(buf, len, "access to %p in a freed allocation of %zu bytes at %p (use after free)", addr, a->size,
             reinterpret_cast<void*>(a->ptr));
  } else if (x < a->ptr) {
    snprintf(buf, len, "access to %p, %zu bytes before the allocation of %zu bytes at %p", addr, size_t(a->ptr - x),
             a->size, reinterpret_cast<void*>(a->ptr));
  } else {
    snprintf(buf, len, "access to %p, %zu bytes past the end of the allocation of %zu bytes at %p", addr,
             size_t(x - (a->ptr + a->size)), a->size, reinterpret_cast<void*>(a->ptr));
  }
  return true;
}

size_t device_bytes_in_use() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_in_use;
}

bool check_canaries(std::string* why) {
  std::lock_guard<std::mutex> lock(g_mu);
  for (auto& [map, a] : g_by_map) {
    if (!a.live) continue;
    const unsigned char* data = reinterpret_cast<const unsigned char*>(a.map + page_size());
    const unsigned char* end = reinterpret_cast<const unsigned char*>(a.map + a.map_len - page_size());
    const unsigned char* p = reinterpret_cast<const unsigned char*>(a.ptr);
    for (const unsigned char* c = data; c < end; ++c) {
      if (c == p) c += a.size;
      if (c < end && *c != kCanary) {
        char buf[256];
        const bool after = c >= p + a.size;
        snprintf(buf, sizeof(buf), "a store %zu bytes %s the allocation of %zu bytes at %p",
                 after ? size_t(c - (p + a.size)) : size_t(p - c), after ? "past the end of" : "before", a.size,
                 reinterpret_cast<const void*>(p));
        *why = buf;
        fill_canaries(a);
        return false;
      }
    }
  }
  return true;
}

}  // namespace vsim
