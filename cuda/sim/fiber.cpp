// The context switch of fiber.h, in assembly for x86-64 (System V) and AArch64 (AAPCS64).
#include "fiber.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
// Stack at the switch, from the saved pointer up: [mxcsr, x87 control word], r15, r14, r13, r12, rbx,
// rbp, return address.
asm(R"(
  .text
  .globl vsim_switch
  .type vsim_switch, @function
vsim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size vsim_switch, .-vsim_switch
)");

namespace vsim {
void* fiber_prepare(char* base, size_t size, void (*entry)()) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(base) + size) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;                                     // entry's return address: never used
  *--sp = reinterpret_cast<uint64_t>(entry);    // popped by ret
  for (int i = 0; i < 6; ++i) *--sp = 0;        // rbp rbx r12 r13 r14 r15
  *--sp = 0x1f80ull | (0x037full << 32);        // default mxcsr and x87 control word
  return sp;
}
}  // namespace vsim

#elif defined(__aarch64__)
// Saved frame (176 bytes): x19..x30 (12), d8..d15 (8), fpcr and padding.
asm(R"(
  .text
  .globl vsim_switch
  .type vsim_switch, %function
vsim_switch:
  sub sp, sp, #176
  stp x19, x20, [sp, #0]
  stp x21, x22, [sp, #16]
  stp x23, x24, [sp, #32]
  stp x25, x26, [sp, #48]
  stp x27, x28, [sp, #64]
  stp x29, x30, [sp, #80]
  stp d8, d9, [sp, #96]
  stp d10, d11, [sp, #112]
  stp d12, d13, [sp, #128]
  stp d14, d15, [sp, #144]
  mrs x9, fpcr
  str x9, [sp, #160]
  mov x9, sp
  str x9, [x0]
  mov sp, x1
  ldp x19, x20, [sp, #0]
  ldp x21, x22, [sp, #16]
  ldp x23, x24, [sp, #32]
  ldp x25, x26, [sp, #48]
  ldp x27, x28, [sp, #64]
  ldp x29, x30, [sp, #80]
  ldp d8, d9, [sp, #96]
  ldp d10, d11, [sp, #112]
  ldp d12, d13, [sp, #128]
  ldp d14, d15, [sp, #144]
  ldr x9, [sp, #160]
  msr fpcr, x9
  add sp, sp, #176
  ret
  .size vsim_switch, .-vsim_switch
)");

namespace vsim {
void* fiber_prepare(char* base, size_t size, void (*entry)()) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(base) + size) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 176);
  memset(sp, 0, 176);
  sp[11] = reinterpret_cast<uint64_t>(entry);  // x30: where ret goes
  return sp;
}
}  // namespace vsim
#else
#error "the CUDA simulator's fibers support x86-64 and AArch64"
#endif
