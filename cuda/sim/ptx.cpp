// Warp-wide PTX instructions, from the PTX ISA (sections "Warp-level matrix load instruction: ldmatrix"
// and "Matrix Fragments for mma.m16n8k16 with floating point type"): every lane deposits its operands,
// the warp meets, and each lane computes its own destination registers from all lanes' operands.
#include <math.h>
#include <string.h>

#include <cuda_bf16.h>

#include "vsim.h"

namespace vsim {
namespace {

float bf16_at(uint32_t reg, int half) {
  const uint32_t u = half ? (reg & 0xffff0000u) : (reg << 16);
  float f;
  memcpy(&f, &u, 4);
  return f;
}


}  // namespace

// ldmatrix .m8n8 .b16: matrix j (of `count`) has its 8 rows, 16 bytes each, at the addresses given by
// lanes 8j..8j+7. Without .trans lane L receives row L/4, elements 2(L%4) and 2(L%4)+1; with .trans it
// receives element L/4 of rows 2(L%4) and 2(L%4)+1 (the matrix transposed). The lower-indexed element
// goes to the low half of the register.
void ldmatrix(uint32_t* r, int count, bool trans, uint32_t addr) {
  const int lane = lane_id();
  const uint32_t* all = warp_exchange(trans ? "ldmatrix.trans" : "ldmatrix", 0xffffffffu, &addr, 1);
  for (int j = 0; j < count; ++j) {
    uint16_t e[2];
    for (int h = 0; h < 2; ++h) {
      const int row = trans ? 2 * (lane % 4) + h : lane / 4;
      const int col = trans ? lane / 4 : 2 * (lane % 4) + h;
      const uint32_t row_addr = all[(8 * j + row) * 16];
      const uint16_t* p = static_cast<const uint16_t*>(shared_ptr(row_addr, 16, 16, "ldmatrix row"));
      e[h] = p[col];
    }
    r[j] = uint32_t(e[0]) | (uint32_t(e[1]) << 16);
  }
}

// mma.m16n8k16 .row.col f32 += bf16 * bf16, groupID g = lane/4, threadID_in_group t = lane%4:
//   A (16x16, row-major): a0,a1 = (g, 2t..2t+1), a2,a3 = (g+8, 2t..2t+1), a4,a5 = (g, 2t+8..2t+9),
//     a6,a7 = (g+8, 2t+8..2t+9), two per register in that order;
//   B (16x8, column-major): b0,b1 = (2t..2t+1, g), b2,b3 = (2t+8..2t+9, g);
//   C, D (16x8): c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1).
// Products of bf16 are exact in f32; the sum over k is taken in f32 in order, then added to c.
void mma_m16n8k16_bf16(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
  const int lane = lane_id();
  const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  const uint32_t* all = warp_exchange("mma.m16n8k16", 0xffffffffu, mine, 6);
  auto A = [&](int row, int col) {
    const int g = row % 8, t = (col % 8) / 2;
    const int reg = (row >= 8 ? 1 : 0) + (col >= 8 ? 2 : 0);
    return bf16_at(all[(4 * g + t) * 16 + reg], col % 2);
  };
  auto B = [&](int row, int col) {
    const int t = (row % 8) / 2;
    const int reg = row >= 8 ? 5 : 4;
    return bf16_at(all[(4 * col + t) * 16 + reg], row % 2);
  };
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i % 2);
    float acc = 0.0f;
    for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
    d[i] += acc;
  }
}

// ex2.approx.ftz.f32: 2^x with a maximum relative error of 2^-22 (PTX ISA), subnormal inputs and
// results flushed to sign-preserving zero; ex2(-inf) = +0.
float ex2_approx_ftz(float x) {
  if (fpclassify(x) == FP_SUBNORMAL) x = copysignf(0.0f, x);
  const float y = exp2f(x);
  return fpclassify(y) == FP_SUBNORMAL ? 0.0f : y;
}

// red.relaxed.gpu.global.add.v2.f32: two atomic adds on an 8-byte aligned pair.
void red_add_v2_f32(float* p, float a, float b) {
  check_global(p, 8, 8, "red.global.add.v2.f32");
  for (int i = 0; i < 2; ++i) {
    float* q = p + i;
    const float v = i == 0 ? a : b;
    float old;
    __atomic_load(q, &old, __ATOMIC_RELAXED);
    float sum = old + v;
    while (!__atomic_compare_exchange(q, &old, &sum, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) sum = old + v;
  }
}

}  // namespace vsim
