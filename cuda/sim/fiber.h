// Cooperative fibers: a stack and a saved stack pointer; switching saves the callee-saved registers
// and the floating-point control words on the old stack and restores them from the new one.
#pragma once

#include <stddef.h>

namespace vsim {

// Saves the current context into *save_sp and resumes the one saved at `to_sp`.
extern "C" void vsim_switch(void** save_sp, void* to_sp);

// Prepares a fresh stack [base, base + size) so that switching to the returned pointer calls entry(),
// which must never return.
void* fiber_prepare(char* base, size_t size, void (*entry)());

}  // namespace vsim
