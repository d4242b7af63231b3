// The simulator's own check, on cases small enough to verify by hand against the PTX ISA's tables:
// one mma.m16n8k16, ldmatrix with and without .trans, and one cp.async group sequence. Exported as
// vsim_ptx_selfcheck() and run by `deno task doctor --device cuda-sim` before anything else.
#include <stdarg.h>
#include <stdio.h>

#include "device.h"

namespace {

struct Report {
  int failures;
  char msg[2048];
};

__device__ void check(Report* r, bool ok, const char* fmt, ...) {
  if (ok) return;
  if (r->failures++ < 4) {
    const size_t used = strlen(r->msg);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg + used, sizeof(r->msg) - used, fmt, ap);
    va_end(ap);
    strncat(r->msg, "; ", sizeof(r->msg) - strlen(r->msg) - 1);
  }
}

uint32_t pack(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }
uint16_t bf(float f) { return __float2bfloat16_rn(f).__x; }

// One warp: A = identity (16x16), B[k][n] = 8k + n, so D = B's first 16 rows: D[i][j] = 8i + j. Each
// lane builds its fragments from the table (g = lane / 4, t = lane % 4) and checks its four outputs.
__global__ void mma_case(Report* r) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  auto A = [](int i, int k) { return bf(i == k ? 1.0f : 0.0f); };
  auto B = [](int k, int n) { return bf(float(8 * k + n)); };
  const uint32_t a[4] = {pack(A(g, 2 * t), A(g, 2 * t + 1)), pack(A(g + 8, 2 * t), A(g + 8, 2 * t + 1)),
                         pack(A(g, 2 * t + 8), A(g, 2 * t + 9)), pack(A(g + 8, 2 * t + 8), A(g + 8, 2 * t + 9))};
  const uint32_t b0 = pack(B(2 * t, g), B(2 * t + 1, g)), b1 = pack(B(2 * t + 8, g), B(2 * t + 9, g));
  float d[4] = {0.5f, 0.5f, 0.5f, 0.5f};  // C = 0.5 everywhere
  vs_attn::mma_bf16(d, a, b0, b1);
  const float want[4] = {float(8 * g + 2 * t), float(8 * g + 2 * t + 1), float(8 * (g + 8) + 2 * t),
                         float(8 * (g + 8) + 2 * t + 1)};
  for (int i = 0; i < 4; ++i) {
    check(r, d[i] == want[i] + 0.5f, "mma lane %d d%d = %g, expected %g", lane, i, d[i], want[i] + 0.5f);
  }
}

// A 32 x 8 b16 matrix in shared memory, element (row, col) = 8 row + col. ldmatrix.x4: matrix j is rows
// 8j..8j+7 (lane 8j + i gives row 8j + i); lane L gets row L/4, columns 2(L%4), 2(L%4)+1 of each.
// ldmatrix.x2.trans on rows 0..15: lane L gets column L/4 of rows 2(L%4), 2(L%4)+1 of each matrix.
__global__ void ldmatrix_case(Report* r) {
  static const char tag = 0;  // what the build's rewrite makes of `__shared__ uint16_t m[32 * 8]`
  uint16_t(&m)[32 * 8] = vsim::shared_var<uint16_t[32 * 8]>(&tag);
  const int lane = threadIdx.x;
  for (int c = 0; c < 8; ++c) m[lane * 8 + c] = uint16_t(lane * 8 + c);
  __syncwarp();
  const uint32_t base = vs_attn::smem_u32(m);
  uint32_t x4[4];
  vs_attn::ldsm_x4(x4, base + uint32_t(lane) * 16);
  for (int j = 0; j < 4; ++j) {
    const int row = 8 * j + lane / 4, col = 2 * (lane % 4);
    const uint32_t want = pack(uint16_t(8 * row + col), uint16_t(8 * row + col + 1));
    check(r, x4[j] == want, "ldmatrix.x4 lane %d r%d = 0x%08x, expected 0x%08x", lane, j, x4[j], want);
  }
  uint32_t t2[2];
  vs_attn::ldsm_x2_trans(t2, base + uint32_t(lane & 15) * 16);
  for (int j = 0; j < 2; ++j) {
    const int row = 8 * j + 2 * (lane % 4), col = lane / 4;
    const uint32_t want = pack(uint16_t(8 * row + col), uint16_t(8 * (row + 1) + col));
    check(r, t2[j] == want, "ldmatrix.x2.trans lane %d r%d = 0x%08x, expected 0x%08x", lane, j, t2[j], want);
  }
}

// Three groups of one 4-byte copy each, the last zero-filled (src-size 0): each lands only when a
// cp.async.wait_group lets its group complete; until then shared memory keeps its NaN poison.
__global__ void cp_async_case(Report* r, const float* g) {
  static const char tag = 0;
  float(&s)[4] = vsim::shared_var<float[4]>(&tag);
  const uint32_t a = vs_attn::smem_u32(s);
  vs_attn::cp_async4(a, g, 4);
  vs_attn::cp_async_commit();
  vs_attn::cp_async4(a + 4, g + 1, 4);
  vs_attn::cp_async_commit();
  vs_attn::cp_async4(a + 8, g + 2, 0);
  vs_attn::cp_async_commit();
  check(r, isnan(s[0]) && isnan(s[1]) && isnan(s[2]), "cp.async landed before any wait");
  vs_attn::cp_async_wait<2>();
  check(r, s[0] == 1.0f && isnan(s[1]) && isnan(s[2]), "after wait_group 2: %g %g %g", s[0], s[1], s[2]);
  vs_attn::cp_async_wait<1>();
  check(r, s[1] == 2.0f && isnan(s[2]), "after wait_group 1: %g %g", s[1], s[2]);
  vs_attn::cp_async_wait<0>();
  check(r, s[2] == 0.0f, "after wait_group 0: %g (the zero fill)", s[2]);
}

}  // namespace

extern "C" int vsim_ptx_selfcheck(char* msg, int len) {
  Report rep{};
  vsim::launch(mma_case, "mma_case", dim3(1), dim3(32))(&rep);
  vsim::launch(ldmatrix_case, "ldmatrix_case", dim3(1), dim3(32))(&rep);
  float* g = nullptr;
  const float host[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  if (cudaMalloc(reinterpret_cast<void**>(&g), sizeof(host)) != cudaSuccess) {
    snprintf(msg, size_t(len), "cudaMalloc failed");
    return 1;
  }
  cudaMemcpy(g, host, sizeof(host), cudaMemcpyHostToDevice);
  vsim::launch(cp_async_case, "cp_async_case", dim3(1), dim3(1))(&rep, static_cast<const float*>(g));
  cudaFree(g);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    snprintf(msg, size_t(len), "a check kernel failed: %s", cudaGetErrorString(e));
    return rep.failures + 1;
  }
  snprintf(msg, size_t(len), "%s", rep.msg);
  return rep.failures;
}
