// Video (b, c, t, h, w) to token rows: patchify for the patch embedding, patch_target for the MAE target.
#include "map.cuh"

namespace vsw {
namespace {

constexpr int kMaxChannels = 16;

// Per-channel normalisation of u8 video, passed by value so the kernel reads it from the constant bank
// (mean_std lives in host memory: no copy to the device is needed). The kernels declare it, and the
// geometry, __grid_constant__: pixel() takes them by reference and indexes mean/std by a run-time
// channel, which would otherwise copy the parameters to local memory in every thread.
struct ChannelNorm {
  float mean[kMaxChannels];
  float std[kMaxChannels];
};

struct VideoGeom {
  int64_t c, t, h, w;
  int tub, p;
  int64_t hp, wp, n_tok;  // patches per column, per row, tokens per clip
};

template <typename TI>
__device__ __forceinline__ float pixel(const TI* video, const VideoGeom& g, const ChannelNorm& nrm, int64_t bi,
                                       int64_t ch, int64_t tau, int64_t hy, int64_t wx, int dt, int dy, int dx) {
  const int64_t frame = tau * g.tub + dt, yy = hy * g.p + dy, xx = wx * g.p + dx;
  const float v = to_f(video[(((bi * g.c + ch) * g.t + frame) * g.h + yy) * g.w + xx]);
  if constexpr (sizeof(TI) == 1) {
    return (v / 255.0f - nrm.mean[ch]) / nrm.std[ch];
  } else {
    return v;
  }
}

// One block per output token row; threads over the c * tubelet * p * p features in (c, dt, dy, dx) order, so
// neighbouring threads read neighbouring pixels of a patch row.
template <typename TI, typename TO>
__global__ void __launch_bounds__(256)
    patchify_kernel(int64_t b, int64_t n_idx, __grid_constant__ const VideoGeom g,
                    __grid_constant__ const ChannelNorm nrm, const TI* video, const int32_t* idx, TO* out) {
  const int pp = g.p * g.p, tpp = g.tub * pp;
  const int feats = int(g.c) * tpp;
  for (int64_t r = blockIdx.x; r < b * n_idx; r += gridDim.x) {
    const int64_t bi = r / n_idx;
    const int64_t tok = idx ? int64_t(idx[r]) : r - bi * n_idx;
    if (tok < 0 || tok >= g.n_tok) continue;
    const int64_t tau = tok / (g.hp * g.wp), hy = (tok / g.wp) % g.hp, wx = tok % g.wp;
    TO* row = out + r * feats;
    for (int f = threadIdx.x; f < feats; f += blockDim.x) {
      const int ch = f / tpp, rem = f - ch * tpp;
      const int dt = rem / pp, rem2 = rem - dt * pp;
      const int dy = rem2 / g.p, dx = rem2 - dy * g.p;
      row[f] = from_f<TO>(pixel(video, g, nrm, bi, ch, tau, hy, wx, dt, dy, dx));
    }
  }
}

// One block per token: per channel, the mean and unbiased std over the tubelet * p * p pixels (two passes),
// then the normalised values written in (dt, dy, dx, c) order.
template <typename TI>
__global__ void __launch_bounds__(256)
    patch_target_kernel(int64_t b, int64_t n_idx, __grid_constant__ const VideoGeom g,
                        __grid_constant__ const ChannelNorm nrm, float eps, const TI* video, const int32_t* idx,
                        float* target) {
  __shared__ float red[32];
  __shared__ float s_mean[kMaxChannels], s_den[kMaxChannels];
  const int pp = g.p * g.p, tpp = g.tub * pp;
  const int c = int(g.c);
  for (int64_t r = blockIdx.x; r < b * n_idx; r += gridDim.x) {
    const int64_t bi = r / n_idx;
    const int64_t tok = idx ? int64_t(idx[r]) : r - bi * n_idx;
    if (tok < 0 || tok >= g.n_tok) continue;  // uniform across the block: no barrier is skipped by some
    const int64_t tau = tok / (g.hp * g.wp), hy = (tok / g.wp) % g.hp, wx = tok % g.wp;
    for (int ch = 0; ch < c; ++ch) {
      float sum = 0.0f;
      for (int q = threadIdx.x; q < tpp; q += blockDim.x) {
        const int dt = q / pp, rem = q - dt * pp, dy = rem / g.p, dx = rem - dy * g.p;
        sum += pixel(video, g, nrm, bi, ch, tau, hy, wx, dt, dy, dx);
      }
      const float mean = block_sum(sum, red) / float(tpp);
      float ss = 0.0f;
      for (int q = threadIdx.x; q < tpp; q += blockDim.x) {
        const int dt = q / pp, rem = q - dt * pp, dy = rem / g.p, dx = rem - dy * g.p;
        const float d = pixel(video, g, nrm, bi, ch, tau, hy, wx, dt, dy, dx) - mean;
        ss += d * d;
      }
      const float var = block_sum(ss, red) / float(tpp - 1);
      if (threadIdx.x == 0) {
        s_mean[ch] = mean;
        s_den[ch] = sqrtf(var) + eps;
      }
    }
    __syncthreads();
    float* row = target + r * int64_t(tpp) * c;
    for (int f = threadIdx.x; f < tpp * c; f += blockDim.x) {
      const int q = f / c, ch = f - q * c;
      const int dt = q / pp, rem = q - dt * pp, dy = rem / g.p, dx = rem - dy * g.p;
      row[f] = (pixel(video, g, nrm, bi, ch, tau, hy, wx, dt, dy, dx) - s_mean[ch]) / s_den[ch];
    }
    __syncthreads();  // s_mean / s_den are rewritten by the next token
  }
}

// Shared checks of both entry points; fills the geometry and the u8 normalisation.
int video_args(const char* fn, int in_dtype, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w, int64_t tubelet,
               int64_t patch, const float* mean_std, const void* video, const int32_t* idx, int64_t n_idx,
               VideoGeom* g, ChannelNorm* nrm) {
  if (in_dtype != VS_F32 && in_dtype != VS_BF16 && in_dtype != VS_U8) {
    return vs_fail(VS_ERR_DTYPE, "%s: in_dtype %s is not supported (f32, bf16 or u8)", fn, dtype_name(in_dtype));
  }
  VSW_TRY(check_size(fn, "b", b));
  VSW_TRY(check_size(fn, "c", c));
  VSW_TRY(check_size(fn, "t", t));
  VSW_TRY(check_size(fn, "h", h));
  VSW_TRY(check_size(fn, "w", w));
  VSW_TRY(check_size(fn, "n_idx", n_idx));
  if (tubelet < 1 || patch < 1 || tubelet * patch * patch > (1 << 20)) {
    return vs_fail(VS_ERR_ARG, "%s: tubelet = %lld, patch = %lld must be positive (and small)", fn,
                   (long long)tubelet, (long long)patch);
  }
  if (c < 1 || c > kMaxChannels) {
    return vs_fail(VS_ERR_ARG, "%s: c = %lld channels, supported 1..%d", fn, (long long)c, kMaxChannels);
  }
  // As the host build: a clip that does not tile exactly is refused rather than silently cropped.
  if (t % tubelet != 0 || h % patch != 0 || w % patch != 0) {
    return vs_fail(VS_ERR_ARG, "%s: t = %lld must be a multiple of tubelet %lld, h = %lld and w = %lld of patch %lld",
                   fn, (long long)t, (long long)tubelet, (long long)h, (long long)w, (long long)patch);
  }
  g->c = c;
  g->t = t;
  g->h = h;
  g->w = w;
  g->tub = int(tubelet);
  g->p = int(patch);
  g->hp = h / patch;
  g->wp = w / patch;
  g->n_tok = (t / tubelet) * g->hp * g->wp;
  if (idx == nullptr && n_idx != g->n_tok) {
    return vs_fail(VS_ERR_ARG, "%s: without idx n_idx must be the token count %lld (t %lld / %lld x %lld x %lld), got %lld",
                   fn, (long long)g->n_tok, (long long)t, (long long)tubelet, (long long)g->hp, (long long)g->wp,
                   (long long)n_idx);
  }
  for (int i = 0; i < kMaxChannels; ++i) {
    nrm->mean[i] = 0.0f;
    nrm->std[i] = 1.0f;
  }
  if (in_dtype == VS_U8) {
    if (mean_std == nullptr) return vs_fail(VS_ERR_ARG, "%s: u8 video needs mean_std (host, 2 * c floats)", fn);
    for (int64_t i = 0; i < c; ++i) {
      nrm->mean[i] = mean_std[i];
      nrm->std[i] = mean_std[c + i];
      if (!(isfinite(nrm->mean[i]) && isfinite(nrm->std[i]) && nrm->std[i] != 0.0f)) {
        return vs_fail(VS_ERR_ARG, "%s: mean_std for channel %lld is mean %g, std %g; both must be finite, std non-zero",
                       fn, (long long)i, double(nrm->mean[i]), double(nrm->std[i]));
      }
    }
  }
  if (b > 0 && n_idx > 0) VSW_TRY(check_ptr(fn, "video", video));
  return VS_OK;
}

template <typename TI>
const TI* as_video(const void* p) {
  return static_cast<const TI*>(p);
}

}  // namespace
}  // namespace vsw

using namespace vsw;

int vs_patchify(int in_dtype, int out_dtype, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w, int64_t tubelet,
                int64_t patch, const float* mean_std, const void* video, const int32_t* idx, int64_t n_idx, void* out,
                vs_stream stream) {
  static const char* fn = "vs_patchify";
  if (out_dtype != VS_F32 && out_dtype != VS_BF16) {
    return vs_fail(VS_ERR_DTYPE, "%s: out_dtype %s is not supported (f32 or bf16)", fn, dtype_name(out_dtype));
  }
  VideoGeom g;
  ChannelNorm nrm;
  VSW_TRY(video_args(fn, in_dtype, b, c, t, h, w, tubelet, patch, mean_std, video, idx, n_idx, &g, &nrm));
  if (b == 0 || n_idx == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "out", out));
  const unsigned grid = grid_for(b * n_idx, 1, 32);
  cudaStream_t s = as_stream(stream);
  auto launch = [&](auto in_tag, auto out_tag) {
    using TI = decltype(in_tag);
    using TO = decltype(out_tag);
    patchify_kernel<TI, TO><<<grid, 256, 0, s>>>(b, n_idx, g, nrm, as_video<TI>(video), idx, static_cast<TO*>(out));
  };
  auto with_out = [&](auto in_tag) {
    if (out_dtype == VS_BF16) {
      launch(in_tag, bf16{});
    } else {
      launch(in_tag, float{});
    }
  };
  if (in_dtype == VS_U8) {
    with_out(uint8_t{});
  } else if (in_dtype == VS_BF16) {
    with_out(bf16{});
  } else {
    with_out(float{});
  }
  return vs_check_launch("vs_patchify (patchify_kernel)");
}

int vs_patch_target(int in_dtype, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w, int64_t tubelet,
                    int64_t patch, float eps, const float* mean_std, const void* video, const int32_t* idx,
                    int64_t n_idx, float* target, vs_stream stream) {
  static const char* fn = "vs_patch_target";
  VideoGeom g;
  ChannelNorm nrm;
  VSW_TRY(video_args(fn, in_dtype, b, c, t, h, w, tubelet, patch, mean_std, video, idx, n_idx, &g, &nrm));
  // The unbiased variance divides by tubelet * patch^2 - 1.
  if (tubelet * patch * patch < 2) {
    return vs_fail(VS_ERR_ARG, "%s: tubelet * patch * patch must be >= 2 for an unbiased variance (tubelet %lld, patch %lld)",
                   fn, (long long)tubelet, (long long)patch);
  }
  if (!(eps >= 0.0f)) return vs_fail(VS_ERR_ARG, "%s: eps = %g must be >= 0", fn, double(eps));
  if (b == 0 || n_idx == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "target", target));
  const unsigned grid = grid_for(b * n_idx, 1, 32);
  cudaStream_t s = as_stream(stream);
  if (in_dtype == VS_U8) {
    patch_target_kernel<uint8_t><<<grid, 256, 0, s>>>(b, n_idx, g, nrm, eps, as_video<uint8_t>(video), idx, target);
  } else if (in_dtype == VS_BF16) {
    patch_target_kernel<bf16><<<grid, 256, 0, s>>>(b, n_idx, g, nrm, eps, as_video<bf16>(video), idx, target);
  } else {
    patch_target_kernel<float><<<grid, 256, 0, s>>>(b, n_idx, g, nrm, eps, as_video<float>(video), idx, target);
  }
  return vs_check_launch("vs_patch_target (patch_target_kernel)");
}
