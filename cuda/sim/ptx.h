// The simulator's definitions of the PTX wrappers of cuda/gpu/attention_ptx.cuh, under its include guard
// (the header reserves it for a CPU emulation): the same names and signatures, each instruction done
// warp-wide as the PTX ISA specifies it (ptx.cpp). A layout mistake in a kernel gives wrong numbers here
// as on the device; a missing cp.async.wait_group leaves the tile unlanded (NaN poison).
#ifndef VSWIFT_ATTENTION_PTX_CUH
#define VSWIFT_ATTENTION_PTX_CUH

#include <stdint.h>

#include <cuda_bf16.h>

namespace vsim {
// ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16: lanes 8j..8j+7 give the row addresses of
// matrix j; r[j] receives this lane's two elements of matrix j.
void ldmatrix(uint32_t* r, int count, bool trans, uint32_t addr);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, d = a * b + c in place.
void mma_m16n8k16_bf16(float* d, const uint32_t* a, uint32_t b0, uint32_t b1);
// ex2.approx.ftz.f32.
float ex2_approx_ftz(float x);
// red.relaxed.gpu.global.add.v2.f32.
void red_add_v2_f32(float* p, float a, float b);
}  // namespace vsim

namespace vs_attn {

inline unsigned char* dynamic_smem() { return static_cast<unsigned char*>(vsim::dynamic_smem()); }

inline uint32_t smem_u32(const void* p) { return vsim::shared_address(p); }

inline void cp_async16(uint32_t dst, const void* src, uint32_t src_bytes) { vsim::cp_async(dst, src, 16, src_bytes); }

inline void cp_async4(uint32_t dst, const void* src, uint32_t src_bytes) { vsim::cp_async(dst, src, 4, src_bytes); }

inline void cp_async_commit() { vsim::cp_async_commit(); }

template <int N>
inline void cp_async_wait() {
  vsim::cp_async_wait(N);
}

inline void ldsm_x4(uint32_t (&r)[4], uint32_t addr) { vsim::ldmatrix(r, 4, false, addr); }

inline void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) { vsim::ldmatrix(r, 4, true, addr); }

inline void ldsm_x2_trans(uint32_t (&r)[2], uint32_t addr) { vsim::ldmatrix(r, 2, true, addr); }

inline void sts_u32(uint32_t addr, uint32_t v) {
  *static_cast<uint32_t*>(vsim::shared_ptr(addr, 4, 4, "st.shared.b32")) = v;
}

inline float2 lds_f32x2(uint32_t addr) {
  return *static_cast<const float2*>(vsim::shared_ptr(addr, 8, 8, "ld.shared.v2.f32"));
}

inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  vsim::mma_m16n8k16_bf16(d, a, b0, b1);
}

inline float fast_exp2(float x) { return vsim::ex2_approx_ftz(x); }

inline uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}

inline float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
inline float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

inline float warp_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }

inline void red_add_f32x2(float* p, float a, float b) { vsim::red_add_v2_f32(p, a, b); }

}  // namespace vs_attn

#endif  // VSWIFT_ATTENTION_PTX_CUH
