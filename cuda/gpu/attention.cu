// vs_attention_*: flash attention for the CUDA build (bf16, head_dim 32..128 in steps of 8).
//
// Forward: one block per (query tile, batch*head), online softmax over double-buffered K/V tiles,
// writes out and the natural-log lse. Backward, three launches on the caller's stream:
//   1. attention_bwd_prep_kernel: D = rowsum(dO * O) and zeroing of the f32 dq accumulator;
//   2. attention_bwd_kernel: one block per (key tile, batch*head); dK and dV are complete per block and
//      written straight into dqkv, dQ contributions are atomically added into the f32 accumulator;
//   3. attention_bwd_dq_kernel: dq * scale -> bf16 into dqkv.
// Determinism: out, lse, dk and dv are bitwise reproducible; dq is not, because the f32 atomics of the
// key blocks land in a run-dependent order (differences are f32 rounding, far below bf16 resolution).
// The alternative, a second kernel that recomputes P and dP per query tile, costs two extra matrix
// products (7 instead of 5), which does not fit the backward throughput target.
//
// Workspace layout: [dq f32 (b, n, heads, hd), 256-byte padded][D f32 (b, heads, n)].
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "attention_kernels.cuh"
#include "common.cuh"

namespace {

using vs_attn::BwdCfg;
using vs_attn::FwdCfg;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

bool misaligned(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) != 0; }

bool overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a0 < b0 + static_cast<uintptr_t>(b_bytes) && b0 < a0 + static_cast<uintptr_t>(a_bytes);
}

int check_shape(const char* fn, int dtype, int64_t b, int64_t n, int64_t heads, int64_t hd, float scale) {
  if (dtype == VS_F32)
    return vs_fail(VS_ERR_DTYPE,
                   "%s: the CUDA attention takes bf16 (dtype %d), got f32 (dtype %d); f32 attention is "
                   "available in the host build",
                   fn, VS_BF16, dtype);
  if (dtype != VS_BF16)
    return vs_fail(VS_ERR_DTYPE, "%s: dtype %d is not supported; the CUDA attention takes bf16 (dtype %d)", fn,
                   dtype, VS_BF16);
  if (b < 1 || n < 1 || heads < 1)
    return vs_fail(VS_ERR_ARG, "%s: b = %lld, n = %lld, heads = %lld must all be at least 1", fn, (long long)b,
                   (long long)n, (long long)heads);
  if (hd < 32 || hd > 128 || hd % 8 != 0)
    return vs_fail(VS_ERR_ARG, "%s: head_dim = %lld is not supported; the CUDA attention takes 32..128 in steps of 8",
                   fn, (long long)hd);
  // The kernels fold the scale into exp2 after taking the max of the raw logits, which needs scale > 0.
  if (!(scale > 0.f) || !isfinite(scale))
    return vs_fail(VS_ERR_ARG, "%s: scale = %g must be positive and finite", fn, (double)scale);
  // Kernel indices within one (batch, head) are 32-bit; element offsets are 64-bit.
  if (n > INT_MAX / 2 || b * heads > INT_MAX || (double)b * (double)n * (double)heads * (double)hd * 3.0 > 4e18)
    return vs_fail(VS_ERR_ARG, "%s: b = %lld, n = %lld, heads = %lld, head_dim = %lld is too large", fn,
                   (long long)b, (long long)n, (long long)heads, (long long)hd);
  return VS_OK;
}

// Opting in to more than 48 KiB of dynamic shared memory is per kernel and per device; the call is
// cheap, so it is repeated on every launch instead of caching per device.
int reserve_smem(const void* kernel, int bytes, const char* name, int hdp) {
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // do not leave the error for an unrelated later launch check
    return vs_fail(VS_ERR_CUDA,
                   "%s (padded head_dim %d): cannot reserve %d bytes of shared memory (the device allows %d "
                   "per block): %s",
                   name, hdp, bytes, vsw::smem_optin(), cudaGetErrorString(e));
  }
  return VS_OK;
}

// Shared memory the backward may plan for: the device's per-block opt-in, lowered by
// VSWIFT_ATTENTION_SMEM (bytes) so that the self-test can run the 99 KiB (sm_86 / sm_89) tiles on any GPU.
// Read on every call: the self-test changes it between cases.
int bwd_smem_limit() {
  int limit = vsw::smem_optin();
  const char* env = getenv("VSWIFT_ATTENTION_SMEM");
  if (env != nullptr && env[0] != '\0') {
    const long v = strtol(env, nullptr, 10);
    if (v > 0 && v < limit) limit = (int)v;
  }
  return limit;
}

}  // namespace

extern "C" int64_t vs_attention_workspace_bytes(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim) {
  // Unsupported arguments need no workspace; vs_attention_bwd reports them.
  if (dtype != VS_BF16 || b < 1 || n < 1 || heads < 1 || head_dim < 1) return 0;
  return round_up(b * n * heads * head_dim * 4, 256) + round_up(b * heads * n * 4, 256);
}

extern "C" int vs_attention_fwd(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim, float scale,
                                const void* qkv, void* out, float* lse, vs_stream stream) {
  const char* fn = "vs_attention_fwd";
  int st = check_shape(fn, dtype, b, n, heads, head_dim, scale);
  if (st != VS_OK) return st;
  if (qkv == nullptr || out == nullptr || lse == nullptr)
    return vs_fail(VS_ERR_ARG, "%s: NULL pointer (qkv %p, out %p, lse %p)", fn, qkv, (void*)out, (void*)lse);
  if (misaligned(qkv, 16) || misaligned(out, 16) || misaligned(lse, 4))
    return vs_fail(VS_ERR_ALIGN, "%s: qkv (%p) and out (%p) need 16-byte alignment, lse (%p) 4-byte", fn, qkv,
                   (void*)out, (void*)lse);
  const int64_t qkv_bytes = b * n * 3 * heads * head_dim * 2, out_bytes = b * n * heads * head_dim * 2;
  const int64_t lse_bytes = b * heads * n * 4;
  if (overlaps(out, out_bytes, qkv, qkv_bytes) || overlaps(lse, lse_bytes, qkv, qkv_bytes) ||
      overlaps(lse, lse_bytes, out, out_bytes))
    return vs_fail(VS_ERR_ARG, "%s: out (%p), lse (%p) and qkv (%p) must not overlap", fn, (void*)out, (void*)lse,
                   qkv);

  const int hdp = (int)((head_dim + 15) & ~15LL);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  return vs_attn::dispatch_fwd(hdp, [&](auto tag) -> int {
    using Tag = decltype(tag);
    using Cfg = FwdCfg<Tag::kHdp, Tag::kWm, Tag::kBn>;
    const int64_t m_tiles = (n + Cfg::kBM - 1) / Cfg::kBM;
    if (b * heads * m_tiles > INT_MAX)
      return vs_fail(VS_ERR_ARG, "%s: b * heads * query tiles = %lld exceeds the grid", fn,
                     (long long)(b * heads * m_tiles));
    const auto kernel = vs_attn::attention_fwd_kernel<Tag::kHdp, Tag::kWm, Tag::kBn>;
    const int r = reserve_smem((const void*)kernel, Cfg::kSmemBytes, "attention_fwd_kernel", hdp);
    if (r != VS_OK) return r;
    vs_attn::FwdArgs a;
    a.qkv = static_cast<const uint16_t*>(qkv);
    a.out = static_cast<uint16_t*>(out);
    a.lse = lse;
    a.n = (int)n;
    a.heads = (int)heads;
    a.hd = (int)head_dim;
    a.m_tiles = (int)m_tiles;
    a.scale_log2 = scale * vs_attn::kLog2e;
    a.scale = scale;
    kernel<<<(unsigned)(b * heads * m_tiles), Cfg::kThreads, Cfg::kSmemBytes, s>>>(a);
    return vs_check_launch("attention_fwd_kernel");
  });
}

extern "C" int vs_attention_bwd(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim, float scale,
                                const void* qkv, const void* out, const void* dout, const float* lse, void* dqkv,
                                void* workspace, int64_t workspace_bytes, vs_stream stream) {
  const char* fn = "vs_attention_bwd";
  int st = check_shape(fn, dtype, b, n, heads, head_dim, scale);
  if (st != VS_OK) return st;
  if (qkv == nullptr || out == nullptr || dout == nullptr || lse == nullptr || dqkv == nullptr)
    return vs_fail(VS_ERR_ARG, "%s: NULL pointer (qkv %p, out %p, dout %p, lse %p, dqkv %p)", fn, qkv, out, dout,
                   (const void*)lse, dqkv);
  const int64_t need = vs_attention_workspace_bytes(dtype, b, n, heads, head_dim);
  if (workspace_bytes < need)
    return vs_fail(VS_ERR_ARG, "%s: workspace of %lld bytes is too small, %lld bytes needed (b %lld, n %lld, "
                   "heads %lld, head_dim %lld)",
                   fn, (long long)workspace_bytes, (long long)need, (long long)b, (long long)n, (long long)heads,
                   (long long)head_dim);
  if (workspace == nullptr)
    return vs_fail(VS_ERR_ARG, "%s: workspace is NULL, %lld bytes needed", fn, (long long)need);
  if (misaligned(qkv, 16) || misaligned(out, 16) || misaligned(dout, 16) || misaligned(dqkv, 16) ||
      misaligned(workspace, 16) || misaligned(lse, 4))
    return vs_fail(VS_ERR_ALIGN,
                   "%s: qkv (%p), out (%p), dout (%p), dqkv (%p) and workspace (%p) need 16-byte alignment, lse "
                   "(%p) 4-byte",
                   fn, qkv, out, dout, dqkv, workspace, (const void*)lse);
  const int64_t qkv_bytes = b * n * 3 * heads * head_dim * 2, o_bytes = b * n * heads * head_dim * 2;
  const int64_t lse_bytes = b * heads * n * 4;
  if (overlaps(dqkv, qkv_bytes, qkv, qkv_bytes) || overlaps(dqkv, qkv_bytes, out, o_bytes) ||
      overlaps(dqkv, qkv_bytes, dout, o_bytes) || overlaps(dqkv, qkv_bytes, lse, lse_bytes) ||
      overlaps(dqkv, qkv_bytes, workspace, need) || overlaps(workspace, need, qkv, qkv_bytes) ||
      overlaps(workspace, need, out, o_bytes) || overlaps(workspace, need, dout, o_bytes) ||
      overlaps(workspace, need, lse, lse_bytes))
    return vs_fail(VS_ERR_ARG, "%s: dqkv (%p) and workspace (%p) must not overlap each other or the inputs", fn,
                   dqkv, workspace);

  const int hd = (int)head_dim;
  const int hdp = (hd + 15) & ~15;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t rows = b * n * heads;  // rows of out / dout / dq
  const int64_t chunks = rows * (hd / 8);
  if ((rows + 15) / 16 > INT_MAX || (chunks + 255) / 256 > INT_MAX)
    return vs_fail(VS_ERR_ARG, "%s: b * n * heads = %lld rows exceed the grid of the preprocessing kernels", fn,
                   (long long)rows);
  float* dq = static_cast<float*>(workspace);
  float* dvec = reinterpret_cast<float*>(static_cast<unsigned char*>(workspace) + round_up(rows * hd * 4, 256));

  vs_attn::attention_bwd_prep_kernel<<<(unsigned)((rows + 15) / 16), 256, 0, s>>>(
      static_cast<const uint16_t*>(out), static_cast<const uint16_t*>(dout), dvec, dq, rows, (int)n, (int)heads, hd);
  st = vs_check_launch("attention_bwd_prep_kernel");
  if (st != VS_OK) return st;

  st = vs_attn::dispatch_bwd(hdp, bwd_smem_limit(), [&](auto tag) -> int {
    using Tag = decltype(tag);
    using Cfg = BwdCfg<Tag::kHdp, Tag::kBm>;
    const int64_t n_tiles = (n + Cfg::kBN - 1) / Cfg::kBN;
    if (b * heads * n_tiles > INT_MAX)
      return vs_fail(VS_ERR_ARG, "%s: b * heads * key tiles = %lld exceeds the grid", fn,
                     (long long)(b * heads * n_tiles));
    const auto kernel = vs_attn::attention_bwd_kernel<Tag::kHdp, Tag::kBm, Tag::kKvRegs>;
    const int r = reserve_smem((const void*)kernel, Cfg::kSmemBytes, "attention_bwd_kernel", hdp);
    if (r != VS_OK) return r;
    vs_attn::BwdArgs a;
    a.qkv = static_cast<const uint16_t*>(qkv);
    a.dout = static_cast<const uint16_t*>(dout);
    a.lse = lse;
    a.dvec = dvec;
    a.dq = dq;
    a.dqkv = static_cast<uint16_t*>(dqkv);
    a.n = (int)n;
    a.heads = (int)heads;
    a.hd = hd;
    a.n_tiles = (int)n_tiles;
    a.scale_log2 = scale * vs_attn::kLog2e;
    a.scale = scale;
    kernel<<<(unsigned)(b * heads * n_tiles), Cfg::kThreads, Cfg::kSmemBytes, s>>>(a);
    return vs_check_launch("attention_bwd_kernel");
  });
  if (st != VS_OK) return st;

  vs_attn::attention_bwd_dq_kernel<<<(unsigned)((chunks + 255) / 256), 256, 0, s>>>(
      dq, static_cast<uint16_t*>(dqkv), rows, (int)heads, hd, scale);
  return vs_check_launch("attention_bwd_dq_kernel");
}
