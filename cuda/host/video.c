/* Video clips to patch tokens: the patch-embedding input (features in Conv3d weight order) and the
 * per-patch normalised pixel target (features with the channel fastest). */
#include <inttypes.h>

#include "host.h"

typedef struct {
  int64_t b, c, t, h, w, tubelet, patch;
  int64_t tp, hp, wp; /* tokens along time, rows and columns */
  int64_t n_tokens;   /* tp * hp * wp */
  int64_t n_feat;     /* c * tubelet * patch * patch */
} video_geom;

/* Validation shared by vs_patchify and vs_patch_target. For float input mean_std is ignored: the clip
 * is taken as already normalised, so a stray pointer cannot silently renormalise it twice. */
static int check_video(const char* k, int in_dtype, video_geom* g, const float* mean_std, const void* video,
                       const int32_t* idx, int64_t n_idx, int64_t* out_numel) {
  if (in_dtype != VS_F32 && in_dtype != VS_BF16 && in_dtype != VS_U8) {
    return vs_fail(VS_ERR_DTYPE, "%s: in_dtype %d (%s) is not supported, use f32, bf16 or u8", k, in_dtype,
                   vs_dtype_name(in_dtype));
  }
  int64_t video_numel = 0;
  VS_TRY(VS_DIMS(k, &video_numel, "b c t h w", g->b, g->c, g->t, g->h, g->w));
  if (g->tubelet < 1 || g->patch < 1) {
    return vs_fail(VS_ERR_ARG, "%s: tubelet and patch must be >= 1, got tubelet %" PRId64 " and patch %" PRId64, k,
                   g->tubelet, g->patch);
  }
  if (g->t % g->tubelet != 0) {
    return vs_fail(VS_ERR_ARG, "%s: t %" PRId64 " is not a multiple of tubelet %" PRId64, k, g->t, g->tubelet);
  }
  if (g->h % g->patch != 0 || g->w % g->patch != 0) {
    return vs_fail(VS_ERR_ARG, "%s: h %" PRId64 " and w %" PRId64 " must be multiples of patch %" PRId64, k, g->h,
                   g->w, g->patch);
  }
  g->tp = g->t / g->tubelet;
  g->hp = g->h / g->patch;
  g->wp = g->w / g->patch;
  g->n_tokens = g->tp * g->hp * g->wp;
  VS_TRY(VS_DIMS(k, out_numel, "b n_idx c tubelet patch patch", g->b, n_idx, g->c, g->tubelet, g->patch, g->patch));
  g->n_feat = g->c * g->tubelet * g->patch * g->patch;
  if (idx == NULL && n_idx != g->n_tokens) {
    return vs_fail(VS_ERR_ARG,
                   "%s: n_idx must equal the token count %" PRId64 " (%" PRId64 " x %" PRId64 " x %" PRId64
                   ") when idx is NULL, got %" PRId64,
                   k, g->n_tokens, g->tp, g->hp, g->wp, n_idx);
  }
  if (in_dtype == VS_U8) {
    if (mean_std == NULL && *out_numel > 0) {
      return vs_fail(VS_ERR_ARG, "%s: u8 input needs mean_std = {mean[0..%" PRId64 "), std[0..%" PRId64 ")}, got NULL",
                     k, g->c, g->c);
    }
    for (int64_t ch = 0; mean_std != NULL && ch < g->c; ch++) {
      const float s = mean_std[g->c + ch];
      if (!(s != 0.0f && isfinite(s) && isfinite(mean_std[ch]))) {
        return vs_fail(VS_ERR_ARG,
                       "%s: mean_std for channel %" PRId64 " is mean %g, std %g; both must be finite and std non-zero",
                       k, ch, (double)mean_std[ch], (double)s);
      }
    }
  }
  VS_TRY(vs_check_ptr(k, "video", video, *out_numel > 0 ? video_numel : 0));
  if (idx != NULL) {
    VS_TRY(vs_check_indices(k, idx, g->b * n_idx, n_idx, g->n_tokens));
  }
  return VS_OK;
}

/* Pixel i of the clip as the model sees it. */
static inline double load_px(int dtype, const void* video, int64_t i, int64_t ch, int64_t c, const float* ms) {
  if (dtype == VS_U8) {
    return ((double)((const uint8_t*)video)[i] / 255.0 - (double)ms[ch]) / (double)ms[c + ch];
  }
  return vs_load(dtype, video, i);
}

/* Index of the first pixel (dt, dy, dx all 0) of token `tok` of batch entry bi, channel ch. */
static inline int64_t token_origin(const video_geom* g, int64_t bi, int64_t ch, int64_t tok) {
  const int64_t tau = tok / (g->hp * g->wp);
  const int64_t hy = (tok / g->wp) % g->hp;
  const int64_t wx = tok % g->wp;
  return ((bi * g->c + ch) * g->t + tau * g->tubelet) * g->h * g->w + hy * g->patch * g->w + wx * g->patch;
}

int vs_patchify(int in_dtype, int out_dtype, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w,
                int64_t tubelet, int64_t patch, const float* mean_std, const void* video,
                const int32_t* idx, int64_t n_idx, void* out, vs_stream stream) {
  static const char* k = "vs_patchify";
  video_geom g = {.b = b, .c = c, .t = t, .h = h, .w = w, .tubelet = tubelet, .patch = patch};
  int64_t out_numel = 0;
  VS_TRY(vs_check_float(k, "out_dtype", out_dtype));
  VS_TRY(check_video(k, in_dtype, &g, mean_std, video, idx, n_idx, &out_numel));
  VS_TRY(vs_check_ptr(k, "out", out, out_numel));
  if (out_numel == 0) {
    return VS_OK;
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(out_numel))
  for (int64_t r = 0; r < b * n_idx; r++) {
    const int64_t bi = r / n_idx;
    const int64_t tok = idx != NULL ? idx[r] : r % n_idx;
    int64_t f = r * g.n_feat;
    /* Feature order (ch, dt, dy, dx), the Conv3d weight order, so the embedding is one GEMM. */
    for (int64_t ch = 0; ch < c; ch++) {
      const int64_t origin = token_origin(&g, bi, ch, tok);
      for (int64_t dt = 0; dt < tubelet; dt++) {
        for (int64_t dy = 0; dy < patch; dy++) {
          const int64_t line = origin + dt * h * w + dy * w;
          for (int64_t dx = 0; dx < patch; dx++) {
            vs_store_d(out_dtype, out, f++, load_px(in_dtype, video, line + dx, ch, c, mean_std));
          }
        }
      }
    }
  }
  return VS_OK;
}

int vs_patch_target(int in_dtype, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w, int64_t tubelet,
                    int64_t patch, float eps, const float* mean_std, const void* video, const int32_t* idx,
                    int64_t n_idx, float* target, vs_stream stream) {
  static const char* k = "vs_patch_target";
  video_geom g = {.b = b, .c = c, .t = t, .h = h, .w = w, .tubelet = tubelet, .patch = patch};
  int64_t out_numel = 0;
  VS_TRY(check_video(k, in_dtype, &g, mean_std, video, idx, n_idx, &out_numel));
  const int64_t px = tubelet * patch * patch;
  if (px < 2) {
    return vs_fail(VS_ERR_ARG,
                   "%s: tubelet * patch * patch must be >= 2 for an unbiased variance, got %" PRId64
                   " (tubelet %" PRId64 ", patch %" PRId64 ")",
                   k, px, tubelet, patch);
  }
  if (!(eps >= 0.0f)) {
    return vs_fail(VS_ERR_ARG, "%s: eps must be >= 0, got %g", k, (double)eps);
  }
  VS_TRY(vs_check_ptr(k, "target", target, out_numel));
  if (out_numel == 0) {
    return VS_OK;
  }
  const int64_t buf_bytes = px * (int64_t)sizeof(double);
  int failed = 0;
#pragma omp parallel num_threads(vs_team(3 * out_numel))
  {
    double* v = vs_scratch(VS_SCRATCH_WORKER0, buf_bytes);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < b * n_idx; r++) {
      if (v == NULL) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      const int64_t bi = r / n_idx;
      const int64_t tok = idx != NULL ? idx[r] : r % n_idx;
      float* out = target + r * g.n_feat;
      for (int64_t ch = 0; ch < c; ch++) {
        const int64_t origin = token_origin(&g, bi, ch, tok);
        int64_t q = 0;
        double sum = 0.0;
        for (int64_t dt = 0; dt < tubelet; dt++) {
          for (int64_t dy = 0; dy < patch; dy++) {
            const int64_t line = origin + dt * h * w + dy * w;
            for (int64_t dx = 0; dx < patch; dx++) {
              v[q] = load_px(in_dtype, video, line + dx, ch, c, mean_std);
              sum += v[q++];
            }
          }
        }
        const double mu = sum / (double)px;
        double ss = 0.0;
        for (q = 0; q < px; q++) {
          ss += (v[q] - mu) * (v[q] - mu);
        }
        const double denom = sqrt(ss / (double)(px - 1)) + (double)eps;
        /* v is in (dt, dy, dx) order, so q is the spatio-temporal part of the feature index. */
        for (q = 0; q < px; q++) {
          out[q * c + ch] = (float)((v[q] - mu) / denom);
        }
      }
    }
  }
  if (failed) {
    return vs_fail_nomem(k, buf_bytes);
  }
  return VS_OK;
}
