// Flash-attention kernels (FA2-style) for bf16 on mma.sync tensor cores, non-causal, no mask.
// Launches and argument checks live in attention.cu; the tile configuration table is at the end of
// this file so that a CPU emulation of the kernels runs exactly the shapes the library launches.
//
// Layouts (elements, not bytes): qkv (b, n, 3, heads, hd); out, dout (b, n, heads, hd);
// lse, D (b, heads, n) f32; dq workspace (b, n, heads, hd) f32.
//
// Shared-memory tiles keep rows of HDP = round_up(hd, 16) elements plus 8 elements of padding: the
// padding makes the row stride an odd multiple of 16 bytes, so the 8 row addresses of every ldmatrix
// phase hit 8 distinct 16-byte bank groups (no conflicts, no swizzle arithmetic). Columns hd..HDP-1
// are zero-filled by the loads (hd = 88 is padded to 96), so they add exact zeros to every product
// and are never written back.
#ifndef VSWIFT_ATTENTION_KERNELS_CUH
#define VSWIFT_ATTENTION_KERNELS_CUH

#include <math.h>
#include <stdint.h>

#include "attention_ptx.cuh"

namespace vs_attn {

constexpr float kLog2e = 1.4426950408889634f;

struct FwdArgs {
  const uint16_t* qkv;
  uint16_t* out;
  float* lse;
  int n, heads, hd;
  int m_tiles;       // query tiles per (batch, head)
  float scale_log2;  // scale * log2(e): logits go straight into exp2
  float scale;
};

struct BwdArgs {
  const uint16_t* qkv;
  const uint16_t* dout;
  const float* lse;
  const float* dvec;  // D = rowsum(dO * O), (b, heads, n)
  float* dq;          // f32 accumulator, (b, n, heads, hd)
  uint16_t* dqkv;
  int n, heads, hd;
  int n_tiles;  // key tiles per (batch, head)
  float scale_log2;
  float scale;
};

template <int HDP, int WM, int BN>
struct FwdCfg {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBM = 16 * WM * kWarps;  // queries per block: WM m16 tiles per warp
  static constexpr int kLds = HDP + 8;
  static constexpr int kSmemBytes = (kBM + 4 * BN) * kLds * 2;  // Q + double-buffered K and V
};

template <int HDP, int BM>
struct BwdCfg {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBN = 16 * kWarps;  // keys per block: one m16 tile of keys per warp
  static constexpr int kLds = HDP + 8;
  static constexpr int kLdp = BM + 8;  // row stride of the dS^T tile
  static constexpr int kSmemBytes =
      (2 * kBN * kLds + 4 * BM * kLds + kBN * kLdp) * 2  // K, V, 2x Q, 2x dO, dS^T (bf16)
      + 4 * BM * 4;                                     // 2x lse, 2x D (f32)
};

// Async copy of token rows [0, ROWS) of a (rows, hd) slice with row stride `stride` into a padded smem
// tile. Rows >= rows_valid and 16-byte chunks >= hd/8 are zero-filled without touching global memory.
template <int ROWS, int HDP, int NT>
__device__ __forceinline__ void load_tile(uint32_t s, const uint16_t* g, int64_t stride, int rows_valid,
                                          int hd_chunks, int tid) {
  constexpr int kChunks = HDP / 8;
  constexpr int kLds = HDP + 8;
#pragma unroll
  for (int c = tid; c < ROWS * kChunks; c += NT) {
    const int r = c / kChunks;
    const int k = c - r * kChunks;
    const bool ok = r < rows_valid && k < hd_chunks;
    const uint16_t* src = ok ? g + r * stride + k * 8 : g;
    cp_async16(s + (r * kLds + k * 8) * 2, src, ok ? 16u : 0u);
  }
}

template <int ROWS, int NT>
__device__ __forceinline__ void load_vec(uint32_t s, const float* g, int valid, int tid) {
#pragma unroll
  for (int r = tid; r < ROWS; r += NT) {
    const bool ok = r < valid;
    cp_async4(s + r * 4, ok ? g + r : g, ok ? 4u : 0u);
  }
}

// ------------------------------------------------------------------------------------------------
// Forward. One block = 4 warps = kBM queries of one (batch, head); warp w owns queries
// [16*WM*w, 16*WM*(w+1)) of the tile, so each K/V fragment read from smem feeds WM mma rows.
// K and V tiles of BN keys are double-buffered with separate cp.async groups so that V_j is still
// landing while S_j = Q K_j^T and its softmax are computed.
// ------------------------------------------------------------------------------------------------
template <int HDP, int WM, int BN>
__global__ void __launch_bounds__(128) attention_fwd_kernel(const FwdArgs a) {
  using Cfg = FwdCfg<HDP, WM, BN>;
  constexpr int kBM = Cfg::kBM, kLds = Cfg::kLds, kNT = Cfg::kThreads;
  constexpr int kKS = HDP / 16;  // k16 steps over head_dim
  constexpr int kNS = BN / 8;    // n8 tiles of S
  constexpr int kDT = HDP / 8;   // n8 tiles of O
  static_assert(HDP % 16 == 0 && BN % 16 == 0, "tile shapes must be multiples of 16");

  // 32-bit shared addresses (bytes): every ldmatrix below is base + per-lane offset + an immediate,
  // which keeps the unrolled loops from holding one generic pointer per fragment in registers.
  constexpr uint32_t kRowB = kLds * 2;
  constexpr uint32_t kKVBuf = BN * kRowB;  // one K or V buffer
  const uint32_t sQ = smem_u32(dynamic_smem());
  const uint32_t sK = sQ + kBM * kRowB;
  const uint32_t sV = sK + 2 * kKVBuf;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  // Consecutive blocks share (batch, head) so that their K/V reads hit L2.
  const int bh = blockIdx.x / a.m_tiles;
  const int q0 = (blockIdx.x - bh * a.m_tiles) * kBM;
  const int bi = bh / a.heads, h = bh - bi * a.heads;
  const int n = a.n;
  const int64_t stride = 3LL * a.heads * a.hd;
  const int64_t slot = (int64_t)a.heads * a.hd;
  const uint16_t* base = a.qkv + (int64_t)bi * n * stride + (int64_t)h * a.hd;
  const int hd_chunks = a.hd >> 3;
  const int n_kv = (n + BN - 1) / BN;

  // Groups: {Q, K0}, {V0}, then per iteration {K_j+1}, {V_j+1} (possibly empty, which keeps the
  // wait counts constant).
  load_tile<kBM, HDP, kNT>(sQ, base + q0 * stride, stride, n - q0, hd_chunks, tid);
  load_tile<BN, HDP, kNT>(sK, base + slot, stride, n, hd_chunks, tid);
  cp_async_commit();
  load_tile<BN, HDP, kNT>(sV, base + 2 * slot, stride, n, hd_chunks, tid);
  cp_async_commit();

  uint32_t qf[WM][kKS][4];
  float o[WM][kDT][4];
  float m[WM][2], l[WM][2];  // running max (raw logits) and this thread's partial row sums
#pragma unroll
  for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt) o[mi][dt][0] = o[mi][dt][1] = o[mi][dt][2] = o[mi][dt][3] = 0.f;
    m[mi][0] = m[mi][1] = -INFINITY;
    l[mi][0] = l[mi][1] = 0.f;
  }
  const float sl2 = a.scale_log2;

  for (int j = 0; j < n_kv; ++j) {
    const int buf = j & 1;
    // K buffer buf^1 held K_{j-1}; every warp finished reading it before the second barrier of j-1.
    if (j + 1 < n_kv)
      load_tile<BN, HDP, kNT>(sK + (buf ^ 1) * kKVBuf, base + slot + (int64_t)(j + 1) * BN * stride, stride,
                              n - (j + 1) * BN, hd_chunks, tid);
    cp_async_commit();
    cp_async_wait<2>();  // K_j (and Q when j == 0) landed; V_j and K_{j+1} may be in flight
    __syncthreads();

    if (j == 0) {
#pragma unroll
      for (int mi = 0; mi < WM; ++mi)
#pragma unroll
        for (int kk = 0; kk < kKS; ++kk)
          ldsm_x4(qf[mi][kk], sQ + ((warp * 16 * WM + (lane & 15)) * kLds + (lane >> 4) * 8) * 2 +
                                  mi * 16 * kRowB + kk * 32);
    }

    // S = Q K^T. B operand (k = dim, n = key) is K row-major: plain ldmatrix; matrices 0/1 are
    // keys 0-7 at dims 0-7 / 8-15 (b0/b1 of n-tile 2np), matrices 2/3 the same for keys 8-15.
    float s[WM][kNS][4];
#pragma unroll
    for (int mi = 0; mi < WM; ++mi)
#pragma unroll
      for (int ni = 0; ni < kNS; ++ni) s[mi][ni][0] = s[mi][ni][1] = s[mi][ni][2] = s[mi][ni][3] = 0.f;
    const uint32_t ks = sK + buf * kKVBuf + (((lane & 7) + ((lane >> 4) << 3)) * kLds + ((lane >> 3) & 1) * 8) * 2;
#pragma unroll
    for (int kk = 0; kk < kKS; ++kk) {
#pragma unroll
      for (int np = 0; np < kNS / 2; ++np) {
        uint32_t b[4];
        ldsm_x4(b, ks + np * 16 * kRowB + kk * 32);
#pragma unroll
        for (int mi = 0; mi < WM; ++mi) {
          mma_bf16(s[mi][2 * np], qf[mi][kk], b[0], b[1]);
          mma_bf16(s[mi][2 * np + 1], qf[mi][kk], b[2], b[3]);
        }
      }
    }

    const int kv_valid = n - j * BN;
    if (kv_valid < BN) {
#pragma unroll
      for (int mi = 0; mi < WM; ++mi)
#pragma unroll
        for (int ni = 0; ni < kNS; ++ni)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (ni * 8 + 2 * t + (e & 1) >= kv_valid) s[mi][ni][e] = -INFINITY;
    }

    // Online softmax. A row lives in the 4 lanes of a quad (xor 1, 2). Every key tile has at least
    // one valid key, so the new max is finite and alpha = exp2(-inf) = 0 on the first tile. The max is
    // taken over raw logits and scaled afterwards, which is valid because scale > 0 (checked on host).
#pragma unroll
    for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        float mx = m[mi][hr];
#pragma unroll
        for (int ni = 0; ni < kNS; ++ni) mx = fmaxf(mx, fmaxf(s[mi][ni][2 * hr], s[mi][ni][2 * hr + 1]));
        mx = fmaxf(mx, warp_xor(mx, 1));
        mx = fmaxf(mx, warp_xor(mx, 2));
        const float alpha = fast_exp2((m[mi][hr] - mx) * sl2);
        m[mi][hr] = mx;
        const float msc = mx * sl2;
        float sum = 0.f;
#pragma unroll
        for (int ni = 0; ni < kNS; ++ni) {
          const float p0 = fast_exp2(fmaf(s[mi][ni][2 * hr], sl2, -msc));
          const float p1 = fast_exp2(fmaf(s[mi][ni][2 * hr + 1], sl2, -msc));
          s[mi][ni][2 * hr] = p0;
          s[mi][ni][2 * hr + 1] = p1;
          sum += p0 + p1;
        }
        l[mi][hr] = l[mi][hr] * alpha + sum;
#pragma unroll
        for (int dt = 0; dt < kDT; ++dt) {
          o[mi][dt][2 * hr] *= alpha;
          o[mi][dt][2 * hr + 1] *= alpha;
        }
      }
    }

    // V buffer buf^1 held V_{j-1}, read by every warp before the first barrier of this iteration.
    if (j + 1 < n_kv)
      load_tile<BN, HDP, kNT>(sV + (buf ^ 1) * kKVBuf, base + 2 * slot + (int64_t)(j + 1) * BN * stride, stride,
                              n - (j + 1) * BN, hd_chunks, tid);
    cp_async_commit();
    cp_async_wait<2>();  // V_j landed
    __syncthreads();

    // O += P V. The S accumulators of n-tiles 2kk and 2kk+1 are exactly the A fragment of k-step kk
    // (c0c1 -> reg0, c2c3 -> reg1 of tile 2kk; reg2/reg3 from tile 2kk+1), so P never touches smem.
    // B operand (k = key, n = dim) from V row-major needs ldmatrix.trans: matrices 0/1 are keys
    // 0-7 / 8-15 at dims 0-7 (b0/b1 of d-tile 2dp), matrices 2/3 the same at dims 8-15.
    const uint32_t vs = sV + buf * kKVBuf + (((lane & 7) + ((lane >> 3) & 1) * 8) * kLds + (lane >> 4) * 8) * 2;
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t pa[WM][4];
#pragma unroll
      for (int mi = 0; mi < WM; ++mi) {
        pa[mi][0] = pack_bf16x2(s[mi][2 * kk][0], s[mi][2 * kk][1]);
        pa[mi][1] = pack_bf16x2(s[mi][2 * kk][2], s[mi][2 * kk][3]);
        pa[mi][2] = pack_bf16x2(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
        pa[mi][3] = pack_bf16x2(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < kDT / 2; ++dp) {
        uint32_t b[4];
        ldsm_x4_trans(b, vs + kk * 16 * kRowB + dp * 32);
#pragma unroll
        for (int mi = 0; mi < WM; ++mi) {
          mma_bf16(o[mi][2 * dp], pa[mi], b[0], b[1]);
          mma_bf16(o[mi][2 * dp + 1], pa[mi], b[2], b[3]);
        }
      }
    }
  }

  // O is staged through this warp's own rows of the Q tile (Q has been in registers since j == 0 and no
  // other warp reads these rows) and written as whole 16-byte chunks: the mma fragments hold 4 bytes per
  // lane 16 bytes apart, which stored directly costs four times the store transactions.
  uint16_t* const stage = reinterpret_cast<uint16_t*>(dynamic_smem()) + warp * 16 * WM * kLds;
  // The quad partial sums share one max, so they add directly.
#pragma unroll
  for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float sum = l[mi][hr];
      sum += warp_xor(sum, 1);
      sum += warp_xor(sum, 2);
      const int r = mi * 16 + g + 8 * hr;  // row within this warp's slice
      const float inv = 1.f / sum;
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt) {
        const int d = dt * 8 + 2 * t;
        *reinterpret_cast<uint32_t*>(stage + r * kLds + d) =
            pack_bf16x2(o[mi][dt][2 * hr] * inv, o[mi][dt][2 * hr + 1] * inv);
      }
      const int row = q0 + warp * 16 * WM + r;
      if (row < n && t == 0) a.lse[(int64_t)bh * n + row] = m[mi][hr] * a.scale + logf(sum);
    }
  }
  __syncwarp();
  for (int i = lane; i < 16 * WM * hd_chunks; i += 32) {
    const int r = i / hd_chunks, c = i - r * hd_chunks;
    const int row = q0 + warp * 16 * WM + r;
    if (row < n)
      *reinterpret_cast<uint4*>(a.out + ((int64_t)(bi * (int64_t)n + row) * a.heads + h) * a.hd + c * 8) =
          *reinterpret_cast<const uint4*>(stage + r * kLds + c * 8);
  }
}

// ------------------------------------------------------------------------------------------------
// Backward preprocessing: D = rowsum(dO * O) and zeroing of the f32 dq accumulator, one half-warp
// per (batch, token, head) row with 16-byte loads.
// ------------------------------------------------------------------------------------------------
__global__ void __launch_bounds__(256) attention_bwd_prep_kernel(const uint16_t* out, const uint16_t* dout,
                                                                 float* dvec, float* dq, int64_t rows, int n,
                                                                 int heads, int hd) {
  const int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 4;
  const int c = threadIdx.x & 15;
  float acc = 0.f;
  if (row < rows && c < (hd >> 3)) {
    const int64_t off = row * hd + c * 8;
    const uint4 ov = *reinterpret_cast<const uint4*>(out + off);
    const uint4 dv = *reinterpret_cast<const uint4*>(dout + off);
    acc = bf16_lo(ov.x) * bf16_lo(dv.x) + bf16_hi(ov.x) * bf16_hi(dv.x) + bf16_lo(ov.y) * bf16_lo(dv.y) +
          bf16_hi(ov.y) * bf16_hi(dv.y) + bf16_lo(ov.z) * bf16_lo(dv.z) + bf16_hi(ov.z) * bf16_hi(dv.z) +
          bf16_lo(ov.w) * bf16_lo(dv.w) + bf16_hi(ov.w) * bf16_hi(dv.w);
    float4* z = reinterpret_cast<float4*>(dq + off);
    z[0] = make_float4(0.f, 0.f, 0.f, 0.f);
    z[1] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
  // xor offsets below 16 keep the reduction inside each half-warp, i.e. inside one row.
  acc += warp_xor(acc, 8);
  acc += warp_xor(acc, 4);
  acc += warp_xor(acc, 2);
  acc += warp_xor(acc, 1);
  if (row < rows && c == 0) {
    const int64_t tok = row / heads;  // bi * n + i
    const int h = (int)(row - tok * heads);
    const int64_t bi = tok / n;
    const int i = (int)(tok - bi * n);
    dvec[(bi * heads + h) * n + i] = acc;
  }
}

// ------------------------------------------------------------------------------------------------
// Backward main kernel. One block = 8 warps = kBN = 128 keys of one (batch, head); warp w owns keys
// [16w, 16w+16). The block walks all query tiles of BM rows (double-buffered Q, dO, lse, D) and works
// in the transposed orientation S^T = K Q^T, dP^T = V dO^T, so that P^T and dS^T come out of the mma
// accumulators already in the A-fragment layout of dV += P^T dO and dK += dS^T Q: four of the five
// products never round-trip through smem. dS^T is staged in smem (bf16) for dQ = dS K, which the 8
// warps split over (query m16 tile, head_dim range) and add into the f32 dq workspace with atomics.
// dK and dV stay in registers for the whole block and are written once at the end.
// KV_REGS keeps the K and V A-fragments in registers (small head_dim) instead of re-reading smem.
// ------------------------------------------------------------------------------------------------
template <bool ON, int KS>
struct KvFrags {
  uint32_t k[KS][4], v[KS][4];
};
template <int KS>
struct KvFrags<false, KS> {};

template <int HDP, int BM, bool KV_REGS>
__global__ void __launch_bounds__(256, 1) attention_bwd_kernel(const BwdArgs a) {
  using Cfg = BwdCfg<HDP, BM>;
  constexpr int kBN = Cfg::kBN, kLds = Cfg::kLds, kLdp = Cfg::kLdp, kNT = Cfg::kThreads;
  constexpr int kKS = HDP / 16;  // k16 steps over head_dim
  constexpr int kNQ = BM / 8;    // n8 tiles of S^T (queries)
  constexpr int kDT = HDP / 8;   // n8 tiles of dK, dV, dQ (head_dim)
  constexpr int kWQ = BM / 16;   // dQ: warps along queries
  constexpr int kWD = Cfg::kWarps / kWQ;  // dQ: warps along head_dim
  constexpr int kNTW = (kDT + kWD - 1) / kWD;  // dQ n8 tiles per warp
  static_assert(HDP % 16 == 0 && BM % 16 == 0 && Cfg::kWarps % kWQ == 0, "bad backward tile shape");

  // Byte offsets in shared memory; every access uses 32-bit shared addresses (base + per-lane offset +
  // immediate), which keeps the unrolled loops from holding one generic pointer per fragment.
  constexpr uint32_t kRowB = kLds * 2, kRowP = kLdp * 2;
  constexpr uint32_t kQBuf = BM * kRowB;  // one Q or dO buffer
  constexpr uint32_t oK = 0, oV = oK + kBN * kRowB, oQ = oV + kBN * kRowB, oDO = oQ + 2 * kQBuf;
  constexpr uint32_t oDS = oDO + 2 * kQBuf, oL = oDS + kBN * kRowP, oD = oL + 2 * BM * 4;
  static_assert(oD + 2 * BM * 4 == (uint32_t)Cfg::kSmemBytes, "smem layout and size disagree");
  // Regions: K, V [kBN][kLds]; Q, dO [2][BM][kLds]; dS^T [kBN][kLdp] (keys as rows); lse, D [2][BM] f32.
  const uint32_t s0 = smem_u32(dynamic_smem());

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int bh = blockIdx.x / a.n_tiles;
  const int k0 = (blockIdx.x - bh * a.n_tiles) * kBN;
  const int bi = bh / a.heads, h = bh - bi * a.heads;
  const int n = a.n;
  const int64_t stride = 3LL * a.heads * a.hd;
  const int64_t slot = (int64_t)a.heads * a.hd;
  const int64_t do_stride = slot;
  const uint16_t* base = a.qkv + (int64_t)bi * n * stride + (int64_t)h * a.hd;
  const uint16_t* do_base = a.dout + (int64_t)bi * n * do_stride + (int64_t)h * a.hd;
  const float* lse_base = a.lse + (int64_t)bh * n;
  const float* d_base = a.dvec + (int64_t)bh * n;
  const int hd_chunks = a.hd >> 3;
  const int n_q = (n + BM - 1) / BM;

  load_tile<kBN, HDP, kNT>(s0 + oK, base + slot + k0 * stride, stride, n - k0, hd_chunks, tid);
  load_tile<kBN, HDP, kNT>(s0 + oV, base + 2 * slot + k0 * stride, stride, n - k0, hd_chunks, tid);
  load_tile<BM, HDP, kNT>(s0 + oQ, base, stride, n, hd_chunks, tid);
  load_tile<BM, HDP, kNT>(s0 + oDO, do_base, do_stride, n, hd_chunks, tid);
  load_vec<BM, kNT>(s0 + oL, lse_base, n, tid);
  load_vec<BM, kNT>(s0 + oD, d_base, n, tid);
  cp_async_commit();

  KvFrags<KV_REGS, kKS> kv;
  float dk[kDT][4], dv[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[dt][e] = dv[dt][e] = 0.f;

  const int kw = warp * 16;  // this warp's keys within the block
  const int key_lo = k0 + kw + g, key_hi = key_lo + 8;
  const bool key_partial = k0 + kBN > n;
  const float sl2 = a.scale_log2;
  const int wq = warp % kWQ, wd = warp / kWQ;
  // A fragments (keys as rows) of this warp's K / V rows: plain ldmatrix, matrices 0..3 = rows 0-7 /
  // 8-15 at dims 0-7, then rows 0-7 / 8-15 at dims 8-15 (reg0..reg3).
  const uint32_t k_frag = s0 + oK + ((kw + (lane & 15)) * kLds + (lane >> 4) * 8) * 2;
  const uint32_t v_frag = k_frag + (oV - oK);
  // Per-lane parts of the other ldmatrix addresses: plain B (rows = n index), .trans B (rows = k
  // index), dS^T A fragments, K B fragments of dQ.
  const uint32_t lane_b = (((lane & 7) + ((lane >> 4) << 3)) * kLds + ((lane >> 3) & 1) * 8) * 2;
  const uint32_t lane_bt = (((lane & 7) + ((lane >> 3) & 1) * 8) * kLds + (lane >> 4) * 8) * 2;
  const uint32_t ds_frag = s0 + oDS + (((lane & 7) + ((lane >> 4) << 3)) * kLdp + wq * 16 + ((lane >> 3) & 1) * 8) * 2;
  const uint32_t kq_frag = s0 + oK + (((lane & 7) + ((lane >> 3) & 1) * 8) * kLds) * 2;
  const uint32_t ds_row = s0 + oDS + ((kw + g) * kLdp + 2 * t) * 2;  // this thread's dS^T stores

  for (int qt = 0; qt < n_q; ++qt) {
    const int buf = qt & 1;
    const int q0 = qt * BM;
    // Buffer buf^1 held tile qt-1, last read (S/dP/dV/dK) before the middle barrier of qt-1.
    if (qt + 1 < n_q) {
      const int q1 = q0 + BM;
      load_tile<BM, HDP, kNT>(s0 + oQ + (buf ^ 1) * kQBuf, base + q1 * stride, stride, n - q1, hd_chunks, tid);
      load_tile<BM, HDP, kNT>(s0 + oDO + (buf ^ 1) * kQBuf, do_base + q1 * do_stride, do_stride, n - q1,
                              hd_chunks, tid);
      load_vec<BM, kNT>(s0 + oL + (buf ^ 1) * BM * 4, lse_base + q1, n - q1, tid);
      load_vec<BM, kNT>(s0 + oD + (buf ^ 1) * BM * 4, d_base + q1, n - q1, tid);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    if constexpr (KV_REGS) {
      if (qt == 0) {
#pragma unroll
        for (int kk = 0; kk < kKS; ++kk) {
          ldsm_x4(kv.k[kk], k_frag + kk * 32);
          ldsm_x4(kv.v[kk], v_frag + kk * 32);
        }
      }
    }

    const uint32_t qs = s0 + oQ + buf * kQBuf, dos = s0 + oDO + buf * kQBuf;
    const uint32_t ls = s0 + oL + buf * BM * 4, ds = s0 + oD + buf * BM * 4;

    // S^T = K Q^T and dP^T = V dO^T. B operands (k = dim, n = query) are Q and dO row-major, read
    // with plain ldmatrix exactly like K in the forward.
    float s[kNQ][4], dp[kNQ][4];
#pragma unroll
    for (int ni = 0; ni < kNQ; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[ni][e] = dp[ni][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kKS; ++kk) {
      uint32_t ka[4], va[4];
      if constexpr (KV_REGS) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          ka[e] = kv.k[kk][e];
          va[e] = kv.v[kk][e];
        }
      } else {
        ldsm_x4(ka, k_frag + kk * 32);
        ldsm_x4(va, v_frag + kk * 32);
      }
#pragma unroll
      for (int np = 0; np < kNQ / 2; ++np) {
        const uint32_t off = lane_b + np * 16 * kRowB + kk * 32;
        uint32_t b[4];
        ldsm_x4(b, qs + off);
        mma_bf16(s[2 * np], ka, b[0], b[1]);
        mma_bf16(s[2 * np + 1], ka, b[2], b[3]);
        ldsm_x4(b, dos + off);
        mma_bf16(dp[2 * np], va, b[0], b[1]);
        mma_bf16(dp[2 * np + 1], va, b[2], b[3]);
      }
    }

    // P^T = exp2(S^T * scale*log2e - lse*log2e); dS^T = P^T (dP^T - D). Accumulator element e of
    // n-tile ni is (key g + 8*(e>>1), query ni*8 + 2t + (e&1)). Keys and queries past n get P = 0
    // explicitly: their zero-filled rows would otherwise give P = exp2(-lse), harmless in exact
    // arithmetic but not when lse is extreme.
    const bool q_partial = q0 + BM > n;
#pragma unroll
    for (int ni = 0; ni < kNQ; ++ni) {
      const int qc = ni * 8 + 2 * t;
      const float2 lq = lds_f32x2(ls + qc * 4);
      const float2 dd = lds_f32x2(ds + qc * 4);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float lv = (e & 1) ? lq.y : lq.x;
        const float dvl = (e & 1) ? dd.y : dd.x;
        float p = fast_exp2(fmaf(s[ni][e], sl2, -lv * kLog2e));
        if (key_partial && ((e >> 1) ? key_hi : key_lo) >= n) p = 0.f;
        if (q_partial && q0 + qc + (e & 1) >= n) p = 0.f;
        s[ni][e] = p;
        dp[ni][e] = p * (dp[ni][e] - dvl);
      }
    }

    // dV += P^T dO, then dK += dS^T Q: A from the accumulators (n-tiles 2kk, 2kk+1 form k-step kk
    // over queries), B (k = query, n = dim) from dO / Q row-major via ldmatrix.trans, as V in the
    // forward. Two passes instead of one keep fewer fragments live next to the dK/dV accumulators.
#pragma unroll
    for (int kk = 0; kk < kNQ / 2; ++kk) {
      uint32_t pa[4];
      pa[0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp2 = 0; dp2 < kDT / 2; ++dp2) {
        uint32_t b[4];
        ldsm_x4_trans(b, dos + lane_bt + kk * 16 * kRowB + dp2 * 32);
        mma_bf16(dv[2 * dp2], pa, b[0], b[1]);
        mma_bf16(dv[2 * dp2 + 1], pa, b[2], b[3]);
      }
    }
#pragma unroll
    for (int kk = 0; kk < kNQ / 2; ++kk) {
      uint32_t da[4];
      da[0] = pack_bf16x2(dp[2 * kk][0], dp[2 * kk][1]);
      da[1] = pack_bf16x2(dp[2 * kk][2], dp[2 * kk][3]);
      da[2] = pack_bf16x2(dp[2 * kk + 1][0], dp[2 * kk + 1][1]);
      da[3] = pack_bf16x2(dp[2 * kk + 1][2], dp[2 * kk + 1][3]);
      // dS^T rows of this warp go to smem for the dQ product; bf16x2 at (key, 2 queries) keeps the
      // stores 4 bytes wide and, with the padded stride, conflict-free.
      sts_u32(ds_row + kk * 32, da[0]);
      sts_u32(ds_row + 8 * kRowP + kk * 32, da[1]);
      sts_u32(ds_row + kk * 32 + 16, da[2]);
      sts_u32(ds_row + 8 * kRowP + kk * 32 + 16, da[3]);
#pragma unroll
      for (int dp2 = 0; dp2 < kDT / 2; ++dp2) {
        uint32_t b[4];
        ldsm_x4_trans(b, qs + lane_bt + kk * 16 * kRowB + dp2 * 32);
        mma_bf16(dk[2 * dp2], da, b[0], b[1]);
        mma_bf16(dk[2 * dp2 + 1], da, b[2], b[3]);
      }
    }
    __syncthreads();  // dS^T complete

    // dQ[q0 + 16wq .. +16, tiles wd*kNTW ..] += dS K. A (m = query, k = key) from dS^T [key][query]
    // via ldmatrix.trans: matrices 0..3 = (keys 0-7, queries 0-7), (keys 0-7, queries 8-15),
    // (keys 8-15, queries 0-7), (keys 8-15, queries 8-15) = reg0..reg3. B (k = key, n = dim) from K
    // row-major via ldmatrix.x2.trans: keys 0-7 / 8-15 of one 8-wide dim tile.
    {
      float acc[kNTW][4];
#pragma unroll
      for (int j = 0; j < kNTW; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
      // Not unrolled: the key steps only move addresses, and unrolling them costs registers that the
      // dK/dV accumulators need at head_dim 128.
#pragma unroll 1
      for (int kk = 0; kk < kBN / 16; ++kk) {
        uint32_t aq[4];
        ldsm_x4_trans(aq, ds_frag + kk * 16 * kRowP);
#pragma unroll
        for (int j = 0; j < kNTW; ++j) {
          const int nt = wd * kNTW + j;
          if (nt < kDT) {  // warp-uniform
            uint32_t b[2];
            ldsm_x2_trans(b, kq_frag + kk * 16 * kRowB + nt * 16);
            mma_bf16(acc[j], aq, b[0], b[1]);
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kNTW; ++j) {
        const int d = (wd * kNTW + j) * 8 + 2 * t;
        if (wd * kNTW + j < kDT && d < a.hd) {
#pragma unroll
          for (int hr = 0; hr < 2; ++hr) {
            const int q = q0 + wq * 16 + g + 8 * hr;
            if (q < n) red_add_f32x2(a.dq + ((bi * (int64_t)n + q) * a.heads + h) * a.hd + d, acc[j][2 * hr],
                                     acc[j][2 * hr + 1]);
          }
        }
      }
    }
  }

  // dK and dV are staged through this warp's rows of the K and V tiles and written as whole 16-byte
  // chunks (the fragments hold 4 bytes per lane 16 bytes apart). Every warp read all K rows in the last
  // dQ step, hence the barrier before they are overwritten.
  __syncthreads();
  uint16_t* const stage_k = reinterpret_cast<uint16_t*>(dynamic_smem() + oK) + kw * kLds;
  uint16_t* const stage_v = reinterpret_cast<uint16_t*>(dynamic_smem() + oV) + kw * kLds;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int r = g + 8 * hr;  // key row within this warp's 16
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt) {
      const int d = dt * 8 + 2 * t;
      *reinterpret_cast<uint32_t*>(stage_k + r * kLds + d) =
          pack_bf16x2(dk[dt][2 * hr] * a.scale, dk[dt][2 * hr + 1] * a.scale);
      *reinterpret_cast<uint32_t*>(stage_v + r * kLds + d) = pack_bf16x2(dv[dt][2 * hr], dv[dt][2 * hr + 1]);
    }
  }
  __syncwarp();
  for (int i = lane; i < 2 * 16 * hd_chunks; i += 32) {
    const int which = i / (16 * hd_chunks);  // 0: dK, 1: dV
    const int rest = i - which * 16 * hd_chunks;
    const int r = rest / hd_chunks, c = rest - r * hd_chunks;
    const int key = k0 + kw + r;
    if (key < n)
      *reinterpret_cast<uint4*>(a.dqkv + (bi * (int64_t)n + key) * stride + (int64_t)h * a.hd + (which + 1) * slot +
                                c * 8) = *reinterpret_cast<const uint4*>((which ? stage_v : stage_k) + r * kLds + c * 8);
  }
}

// ------------------------------------------------------------------------------------------------
// dq (f32 workspace, (b, n, heads, hd)) * scale -> bf16 slot 0 of dqkv; 8 elements per thread.
// ------------------------------------------------------------------------------------------------
__global__ void __launch_bounds__(256) attention_bwd_dq_kernel(const float* dq, uint16_t* dqkv, int64_t rows,
                                                               int heads, int hd, float scale) {
  const int chunks = hd >> 3;
  const int64_t id = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (id >= rows * chunks) return;
  const int64_t row = id / chunks;  // (bi * n + i) * heads + h
  const int c = (int)(id - row * chunks);
  const float4* src = reinterpret_cast<const float4*>(dq + row * hd + c * 8);
  const float4 x = src[0], y = src[1];
  const int64_t tok = row / heads;
  const int h = (int)(row - tok * heads);
  uint4 v;
  v.x = pack_bf16x2(x.x * scale, x.y * scale);
  v.y = pack_bf16x2(x.z * scale, x.w * scale);
  v.z = pack_bf16x2(y.x * scale, y.y * scale);
  v.w = pack_bf16x2(y.z * scale, y.w * scale);
  *reinterpret_cast<uint4*>(dqkv + tok * 3 * heads * hd + (int64_t)h * hd + c * 8) = v;
}

// ------------------------------------------------------------------------------------------------
// Tile configuration per padded head_dim, shared by the launcher and the CPU emulation check. The
// choices are the largest tiles that ptxas (sm_80 and sm_90a) fits in 255 registers without spills.
// Forward: 128 queries (two m16 tiles per warp) x 64 keys per step up to hd 80 (hd 64: Q 32 + O 64 +
// S 64 registers per thread); hd 96 takes 32 keys per step (O grows to 96 registers); hd 112/128 use
// 64 queries (one m16 tile per warp).
// Backward: 128 keys x 64 queries per step up to hd 96 (K/V fragments in registers up to hd 64);
// dK + dV accumulators grow to 112/128 registers at hd 112/128, which then take 32/16 queries per step.
// Shared memory: those backward tiles need up to 125,952 bytes (hd 96), more than the 99 KiB (101,376
// bytes) a block may opt in to on sm_86 / sm_89 (A10, A40, L4, L40S, RTX 30xx / 40xx); there hd 80 / 96
// take 32 queries per step and hd 112 takes 16 (78,336 / 90,624 / 83,200 bytes). sm_80 (163 KiB) and
// sm_90 (227 KiB) take the first choice at every head_dim; the forward fits 99 KiB everywhere.
// ------------------------------------------------------------------------------------------------
template <int HDP, int WM, int BN>
struct FwdTag {
  static constexpr int kHdp = HDP, kWm = WM, kBn = BN;
};
template <int HDP, int BM, bool KV_REGS>
struct BwdTag {
  static constexpr int kHdp = HDP, kBm = BM;
  static constexpr bool kKvRegs = KV_REGS;
};

// hdp: head_dim rounded up to 16, validated by the caller (32..128).
template <class F>
int dispatch_fwd(int hdp, F&& f) {
  switch (hdp) {
    case 32: return f(FwdTag<32, 2, 64>{});
    case 48: return f(FwdTag<48, 2, 64>{});
    case 64: return f(FwdTag<64, 2, 64>{});
    case 80: return f(FwdTag<80, 2, 64>{});
    case 96: return f(FwdTag<96, 2, 32>{});
    case 112: return f(FwdTag<112, 1, 64>{});
    default: return f(FwdTag<128, 1, 64>{});
  }
}

template <class Tag>
constexpr int bwd_smem_bytes() {
  return BwdCfg<Tag::kHdp, Tag::kBm>::kSmemBytes;
}

// The first choice when its shared memory fits `smem_limit` (the device's per-block opt-in), else the
// smaller query tile.
template <class Big, class Small, class F>
int pick_bwd(int smem_limit, F&& f) {
  static_assert(bwd_smem_bytes<Small>() < bwd_smem_bytes<Big>(), "the fallback must need less shared memory");
  if (bwd_smem_bytes<Big>() <= smem_limit) return f(Big{});
  return f(Small{});
}

template <class F>
int dispatch_bwd(int hdp, int smem_limit, F&& f) {
  switch (hdp) {
    case 32: return f(BwdTag<32, 64, true>{});
    case 48: return f(BwdTag<48, 64, true>{});
    case 64: return f(BwdTag<64, 64, true>{});
    case 80: return pick_bwd<BwdTag<80, 64, false>, BwdTag<80, 32, false>>(smem_limit, f);
    case 96: return pick_bwd<BwdTag<96, 64, false>, BwdTag<96, 32, false>>(smem_limit, f);
    case 112: return pick_bwd<BwdTag<112, 32, false>, BwdTag<112, 16, false>>(smem_limit, f);
    default: return f(BwdTag<128, 16, false>{});
  }
}

}  // namespace vs_attn

#endif  // VSWIFT_ATTENTION_KERNELS_CUH
