/* Data augmentation: decoded uint8 RGB frames to one normalised (3, t, out_h, out_w) clip. The resize is
 * separable: a vertical pass over the crop window's columns, then a horizontal pass, with tap tables
 * computed once per call. */
#include <inttypes.h>

#include "host.h"

#ifdef __AVX2__
#include <immintrin.h>
#endif

#define VS_AUG_MAX_T 256

typedef struct {
  int32_t* start; /* (out) first source index of each output's taps */
  int32_t* count; /* (out) taps used */
  float* weight;  /* (out, max_taps) normalised weights */
  int64_t max_taps;
  int64_t lo, hi; /* the crop window [lo, hi) in source pixels */
} taps_1d;

/* Taps needed per output for a crop of `crop` source pixels resized to `out`. */
static int64_t max_taps_for(double crop, int64_t out, int antialias) {
  const double scale = crop / (double)out;
  const double support = antialias && scale > 1.0 ? scale : 1.0;
  return (int64_t)ceil(2.0 * support) + 2;
}

/* Triangle-filter taps over source pixel centres j + 0.5, clamped to the crop window and normalised. */
static void make_taps(taps_1d* tp, double x0, double crop, int64_t size, int64_t out, int antialias) {
  const double scale = crop / (double)out;
  const double support = antialias && scale > 1.0 ? scale : 1.0;
  tp->lo = (int64_t)floor(x0);
  tp->hi = (int64_t)ceil(x0 + crop);
  if (tp->lo < 0) {
    tp->lo = 0;
  }
  if (tp->hi > size) {
    tp->hi = size;
  }
  if (tp->hi <= tp->lo) {
    tp->hi = tp->lo + 1;
  }
  for (int64_t o = 0; o < out; o++) {
    const double center = x0 + ((double)o + 0.5) * scale;
    int64_t a = (int64_t)floor(center - support - 0.5);
    int64_t b = (int64_t)ceil(center + support - 0.5);
    if (a < tp->lo) {
      a = tp->lo;
    }
    if (b > tp->hi - 1) {
      b = tp->hi - 1;
    }
    double w[64];
    double sum = 0.0;
    int64_t n = 0;
    for (int64_t j = a; j <= b && n < tp->max_taps && n < 64; j++) {
      const double d = fabs((double)j + 0.5 - center) / support;
      w[n] = d < 1.0 ? 1.0 - d : 0.0;
      sum += w[n++];
    }
    if (sum <= 0.0) {
      /* Only when the centre sits outside the window: take the nearest pixel of the window. */
      a = center < (double)tp->lo ? tp->lo : tp->hi - 1;
      n = 1;
      w[0] = 1.0;
      sum = 1.0;
    }
    tp->start[o] = (int32_t)a;
    tp->count[o] = (int32_t)n;
    for (int64_t k = 0; k < tp->max_taps; k++) {
      tp->weight[o * tp->max_taps + k] = k < n ? (float)(w[k] / sum) : 0.0f;
    }
  }
}

int vs_crop_resize_normalize(int out_dtype, int64_t n_frames, int64_t h, int64_t w, const uint8_t* frames,
                             int64_t t, const int32_t* frame_idx, float x0, float y0, float crop_w,
                             float crop_h, int64_t out_h, int64_t out_w, int antialias, int flip,
                             const float* mean_std, void* out, vs_stream stream) {
  static const char* k = "vs_crop_resize_normalize";
  int64_t in_numel = 0;
  int64_t out_numel = 0;
  VS_TRY(vs_check_float(k, "out_dtype", out_dtype));
  VS_TRY(VS_DIMS(k, &in_numel, "n_frames h w channels", n_frames, h, w, 3));
  VS_TRY(VS_DIMS(k, &out_numel, "channels t out_h out_w", 3, t, out_h, out_w));
  VS_TRY(vs_check_flag(k, "antialias", antialias));
  VS_TRY(vs_check_flag(k, "flip", flip));
  if (t > VS_AUG_MAX_T) {
    return vs_fail(VS_ERR_ARG, "%s: t %" PRId64 " exceeds the %d frames a clip may have", k, t, VS_AUG_MAX_T);
  }
  if (out_numel == 0) {
    return VS_OK;
  }
  if (h < 1 || w < 1 || n_frames < 1) {
    return vs_fail(VS_ERR_ARG, "%s: the frames are empty (n_frames %" PRId64 ", h %" PRId64 ", w %" PRId64 ")", k,
                   n_frames, h, w);
  }
  const double tol = 1e-3;
  if (!(isfinite(x0) && isfinite(y0) && crop_w > 0.0f && crop_h > 0.0f && x0 >= -tol && y0 >= -tol &&
        (double)x0 + (double)crop_w <= (double)w + tol && (double)y0 + (double)crop_h <= (double)h + tol)) {
    return vs_fail(VS_ERR_ARG,
                   "%s: the crop box x0 %g, y0 %g, %g x %g must have a positive size and lie inside the %" PRId64
                   " x %" PRId64 " frame",
                   k, (double)x0, (double)y0, (double)crop_w, (double)crop_h, w, h);
  }
  if (frame_idx == NULL && t > n_frames) {
    return vs_fail(VS_ERR_ARG, "%s: t %" PRId64 " exceeds n_frames %" PRId64 " and frame_idx is NULL", k, t,
                   n_frames);
  }
  if (frame_idx != NULL) {
    VS_TRY(vs_check_indices(k, frame_idx, t, t, n_frames));
  }
  if (mean_std == NULL) {
    return vs_fail(VS_ERR_ARG, "%s: mean_std = {mean[3], std[3]} is NULL", k);
  }
  for (int ch = 0; ch < 3; ch++) {
    if (!(isfinite(mean_std[ch]) && isfinite(mean_std[3 + ch]) && mean_std[3 + ch] != 0.0f)) {
      return vs_fail(VS_ERR_ARG, "%s: mean_std for channel %d is mean %g, std %g; both must be finite, std non-zero",
                     k, ch, (double)mean_std[ch], (double)mean_std[3 + ch]);
    }
  }
  VS_TRY(vs_check_ptr(k, "frames", frames, in_numel));
  VS_TRY(vs_check_ptr(k, "out", out, out_numel));

  taps_1d ty = {.max_taps = max_taps_for(crop_h, out_h, antialias)};
  taps_1d tx = {.max_taps = max_taps_for(crop_w, out_w, antialias)};
  if (ty.max_taps > 64 || tx.max_taps > 64) {
    return vs_fail(VS_ERR_ARG,
                   "%s: shrinking %g x %g to %" PRId64 " x %" PRId64 " with antialias needs more than 64 taps; "
                   "decode at a smaller size first",
                   k, (double)crop_w, (double)crop_h, out_w, out_h);
  }
  const int64_t table_bytes = (out_h + out_w) * (int64_t)(2 * sizeof(int32_t)) +
                              (out_h * ty.max_taps + 2 * out_w * tx.max_taps) * (int64_t)sizeof(float);
  char* table = vs_scratch(VS_SCRATCH_CALLER0, table_bytes);
  if (table == NULL) {
    return vs_fail_nomem(k, table_bytes);
  }
  ty.start = (int32_t*)table;
  ty.count = ty.start + out_h;
  tx.start = ty.count + out_h;
  tx.count = tx.start + out_w;
  ty.weight = (float*)(tx.count + out_w);
  tx.weight = ty.weight + out_h * ty.max_taps;
  make_taps(&ty, y0, crop_h, h, out_h, antialias);
  make_taps(&tx, x0, crop_w, w, out_w, antialias);
  /* The x weights transposed, (max_taps, out_w), so the horizontal pass runs along outputs; x starts
   * relative to the window. */
  float* wxt = tx.weight + out_w * tx.max_taps;
  int32_t* xrel = tx.start;
  for (int64_t ox = 0; ox < out_w; ox++) {
    xrel[ox] -= (int32_t)tx.lo;
    for (int64_t kk = 0; kk < tx.max_taps; kk++) {
      wxt[kk * out_w + ox] = tx.weight[ox * tx.max_taps + kk];
    }
  }

  float scale[3];
  float shift[3];
  for (int ch = 0; ch < 3; ch++) {
    scale[ch] = (float)(1.0 / (255.0 * (double)mean_std[3 + ch]));
    shift[ch] = (float)(-(double)mean_std[ch] / (double)mean_std[3 + ch]);
  }
  /* Taps the horizontal pass runs: the most any output uses (the rest of each row of weights is 0). */
  int64_t mt = 1;
  for (int64_t ox = 0; ox < out_w; ox++) {
    mt = tx.count[ox] > mt ? tx.count[ox] : mt;
    xrel[ox] *= 3; /* offsets into the interleaved row */
  }
  /* Per thread: the vertical pass's result (interleaved RGB over the window), followed by zeros so that
   * every output can run over mt taps (the weights past its own taps are 0, the values must be finite). */
  const int64_t win3 = (tx.hi - tx.lo) * 3;
  const int64_t padded = win3 + 3 * tx.max_taps + 8;
  const int64_t row_bytes = (padded + out_w) * (int64_t)sizeof(float);
  const int64_t plane = t * out_h * out_w;
  int failed = 0;
#pragma omp parallel num_threads(vs_team(out_numel * (ty.max_taps + tx.max_taps)))
  {
    float* acc = vs_scratch(VS_SCRATCH_WORKER0, row_bytes);
    float* sum = acc != NULL ? acc + padded : NULL;
    if (acc != NULL) {
      for (int64_t i = win3; i < padded; i++) {
        acc[i] = 0.0f;
      }
    }
#pragma omp for schedule(static)
    for (int64_t r = 0; r < t * out_h; r++) {
      if (acc == NULL) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      const int64_t f = r / out_h;
      const int64_t oy = r % out_h;
      const int64_t src_frame = frame_idx != NULL ? frame_idx[f] : f;
      const uint8_t* base = frames + src_frame * h * w * 3 + tx.lo * 3;
      /* Vertical pass over the window's columns, interleaved RGB. */
      {
        const float wy = ty.weight[oy * ty.max_taps];
        const uint8_t* src = base + (int64_t)ty.start[oy] * w * 3;
        for (int64_t i = 0; i < win3; i++) {
          acc[i] = wy * (float)src[i];
        }
      }
      for (int32_t kk = 1; kk < ty.count[oy]; kk++) {
        const float wy = ty.weight[oy * ty.max_taps + kk];
        const uint8_t* src = base + (int64_t)(ty.start[oy] + kk) * w * 3;
        for (int64_t i = 0; i < win3; i++) {
          acc[i] += wy * (float)src[i];
        }
      }
      /* Horizontal pass per channel (gathering from the interleaved row), normalisation, store. */
      const int64_t line = f * out_h * out_w + oy * out_w;
      for (int ch = 0; ch < 3; ch++) {
        const float* restrict px = acc + ch;
        const float sc = scale[ch];
        const float sh = shift[ch];
        const int64_t o0 = ch * plane + line;
        int64_t ox = 0;
#ifdef __AVX2__
        if (out_dtype == VS_F32 && out_w % 8 == 0 && (((uintptr_t)((float*)out + o0)) & 31u) == 0) {
          /* Whole rows of 8-float blocks, aligned: streaming stores (the batch is written once and read
           * much later, so it need not pass through the cache). */
          float* dst = (float*)out + o0;
          const __m256 vsc = _mm256_set1_ps(sc);
          const __m256 vsh = _mm256_set1_ps(sh);
          const __m256i rev = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
          for (; ox < out_w; ox += 8) {
            const __m256i at = _mm256_loadu_si256((const __m256i*)(xrel + ox));
            __m256 a = _mm256_mul_ps(_mm256_loadu_ps(wxt + ox), _mm256_i32gather_ps(px, at, 4));
            for (int64_t kk = 1; kk < mt; kk++) {
              a = _mm256_fmadd_ps(_mm256_loadu_ps(wxt + kk * out_w + ox), _mm256_i32gather_ps(px + 3 * kk, at, 4),
                                  a);
            }
            a = _mm256_fmadd_ps(a, vsc, vsh);
            if (flip) {
              _mm256_stream_ps(dst + out_w - 8 - ox, _mm256_permutevar8x32_ps(a, rev));
            } else {
              _mm256_stream_ps(dst + ox, a);
            }
          }
          continue;
        }
        for (; ox + 8 <= out_w; ox += 8) {
          const __m256i at = _mm256_loadu_si256((const __m256i*)(xrel + ox));
          __m256 a = _mm256_mul_ps(_mm256_loadu_ps(wxt + ox), _mm256_i32gather_ps(px, at, 4));
          for (int64_t kk = 1; kk < mt; kk++) {
            a = _mm256_fmadd_ps(_mm256_loadu_ps(wxt + kk * out_w + ox), _mm256_i32gather_ps(px + 3 * kk, at, 4), a);
          }
          _mm256_storeu_ps(sum + ox, a);
        }
#endif
        for (; ox < out_w; ox++) {
          float a = wxt[ox] * px[xrel[ox]];
          for (int64_t kk = 1; kk < mt; kk++) {
            a += wxt[kk * out_w + ox] * px[xrel[ox] + 3 * kk];
          }
          sum[ox] = a;
        }
        if (out_dtype == VS_F32) {
          float* dst = (float*)out + o0;
          for (int64_t i = 0; i < out_w; i++) {
            dst[flip ? out_w - 1 - i : i] = sum[i] * sc + sh;
          }
        } else {
          uint16_t* dst = (uint16_t*)out + o0;
          for (int64_t i = 0; i < out_w; i++) {
            dst[flip ? out_w - 1 - i : i] = vs_f32_to_bf16(sum[i] * sc + sh);
          }
        }
      }
    }
#ifdef __AVX2__
    _mm_sfence(); /* the streaming stores are visible before the kernel returns */
#endif
  }
  if (failed) {
    return vs_fail_nomem(k, row_bytes);
  }
  return VS_OK;
}
