// Warp-level primitives of the flash-attention kernels (attention_kernels.cuh), kept apart from the
// tiling code so that every use of a PTX instruction goes through one audited wrapper. The kernels rely
// on the register layouts documented in the PTX ISA, section "Matrix Fragments for mma.m16n8k16 with
// floating point type" (groupID = lane >> 2, threadID_in_group = lane % 4):
//   A (16x16 bf16, 4 regs): reg0 (row g, cols 2t..2t+1), reg1 (row g+8, same cols),
//                           reg2 (row g, cols 2t+8..2t+9), reg3 (row g+8, cols 2t+8..2t+9)
//   B (16x8 bf16, 2 regs):  reg0 (rows 2t..2t+1, col g), reg1 (rows 2t+8..2t+9, col g)
//   C/D (16x8 f32, 4 regs): c0,c1 (row g, cols 2t, 2t+1), c2,c3 (row g+8, cols 2t, 2t+1)
// and on ldmatrix (section "ldmatrix"): lanes 8j..8j+7 give the row addresses of matrix j, which lands
// in destination register j; without .trans lane L receives row L/4, columns 2(L%4) and 2(L%4)+1;
// with .trans it receives rows 2(L%4) and 2(L%4)+1 of column L/4. In a .b32 register holding two
// 16-bit elements the lower-indexed element is in the low half.
//
// A CPU emulation used to check the tiling provides its own definitions of these functions under the
// same include guard, which is why this header uses a classic guard instead of #pragma once.
#ifndef VSWIFT_ATTENTION_PTX_CUH
#define VSWIFT_ATTENTION_PTX_CUH

#include <cuda_bf16.h>
#include <stdint.h>

namespace vs_attn {

__device__ __forceinline__ unsigned char* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char vs_attn_smem[];
  return vs_attn_smem;
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// src_bytes 0 makes the copy write zeros without reading src: rows past n and the head_dim padding are
// filled this way, so partial tiles need no separate zeroing pass and never read out of bounds.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, uint32_t src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, uint32_t src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Only lanes 0..15 supply addresses; the others must still pass a valid one (they do: callers use lane & 15).
__device__ __forceinline__ void ldsm_x2_trans(uint32_t (&r)[2], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}

// Plain shared-memory accesses on 32-bit shared addresses, like the ldmatrix/cp.async operands.
__device__ __forceinline__ void sts_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}

__device__ __forceinline__ float2 lds_f32x2(uint32_t addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(addr));
  return v;
}

// d += A * B for one 16x8x16 tile, bf16 inputs, f32 accumulation.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The MUFU exponential: about 2 ulp, and exp2(-inf) = +0, which the masking relies on.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Round-to-nearest-even to bf16; `lo` ends up in the low half, the element order mma and ldmatrix use.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

__device__ __forceinline__ float warp_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }

// dq accumulation across key blocks. sm_90 has a two-float reduction, which halves the number of
// L2 atomic requests; the pointer is 8-byte aligned because head_dim and the column are even.
__device__ __forceinline__ void red_add_f32x2(float* p, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.relaxed.gpu.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(p), "f"(a), "f"(b) : "memory");
#else
  atomicAdd(p, a);
  atomicAdd(p + 1, b);
#endif
}

}  // namespace vs_attn

#endif  // VSWIFT_ATTENTION_PTX_CUH
