// Simulated device memory: every allocation is its own mapping, its end against an inaccessible guard
// page and its slack bytes filled with a canary, and freed memory stays mapped inaccessible for a while,
// so that kernels' plain loads and stores out of bounds or after a free fault (SIGSEGV) or leave a
// trace, and the runtime can say which allocation was missed.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>

namespace vsim {

// The host's page size (guard pages are whole pages: 4 KiB on x86-64, up to 64 KiB on AArch64).
size_t page_size();
// Returns NULL when the host is out of memory.
void* device_alloc(size_t bytes);
// False (with a message) for a pointer that is not the start of a live allocation.
bool device_free(void* p, std::string* why);
// True when [p, p + bytes) lies in one live allocation; otherwise a description of what it hits.
bool device_range_ok(const void* p, size_t bytes, std::string* why);
// A description of a faulting address if it belongs to simulated memory (a guard page or freed
// memory); false if it is none of ours.
bool describe_fault(const void* addr, char* buf, size_t len);
// Bytes in live allocations.
size_t device_bytes_in_use();
// Checks the canaries around every live allocation; false with a message naming the first one damaged
// (a store past the end that did not reach the guard page). Repairs them.
bool check_canaries(std::string* why);

}  // namespace vsim
