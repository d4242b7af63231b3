/* Data augmentation: decoded uint8 frames (RGB24, or YUV420P converted here) to one normalised
 * (3, t, out_h, out_w) clip. The resize is separable: a vertical pass over the crop window's columns, then
 * a horizontal pass (8 outputs at a time with AVX2 gathers), with tap tables computed once per call. */
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

/* Tap tables of one axis, with the x weights transposed (max_taps, out) and the starts turned into
 * element offsets relative to the window (times `elem`, the values per pixel of the row buffer). */
typedef struct {
  taps_1d t;
  float* wt;     /* (max_taps, out) */
  int32_t* rel;  /* (out) */
  int64_t mt;    /* taps the horizontal pass runs: the most any output uses */
} xtaps;

/* Bytes of an axis' tables for `out` outputs. */
static int64_t table_bytes_for(int64_t out, int64_t max_taps) {
  return out * (int64_t)(3 * sizeof(int32_t)) + 2 * out * max_taps * (int64_t)sizeof(float);
}

/* Lays out and fills the tables of one axis in `mem`; `elem` is 0 for a vertical axis (no transposed
 * copy needed). Returns the bytes used. */
static int64_t setup_axis(char* mem, taps_1d* tp, xtaps* xt, double x0, double crop, int64_t size, int64_t out,
                          int antialias, int64_t elem) {
  tp->start = (int32_t*)mem;
  tp->count = tp->start + out;
  tp->weight = (float*)(tp->count + out);
  make_taps(tp, x0, crop, size, out, antialias);
  if (xt != NULL) {
    xt->t = *tp;
    xt->wt = tp->weight + out * tp->max_taps;
    xt->rel = (int32_t*)(xt->wt + out * tp->max_taps);
    xt->mt = 1;
    for (int64_t o = 0; o < out; o++) {
      xt->mt = tp->count[o] > xt->mt ? tp->count[o] : xt->mt;
      xt->rel[o] = (int32_t)((tp->start[o] - tp->lo) * elem);
      for (int64_t kk = 0; kk < tp->max_taps; kk++) {
        xt->wt[kk * out + o] = tp->weight[o * tp->max_taps + kk];
      }
    }
  }
  return table_bytes_for(out, tp->max_taps);
}

/* acc[i] = sum over the output row's taps of weight * src_row[i], i < n; rows are `stride` bytes apart. */
static inline void vertical_pass(const uint8_t* base, int64_t stride, const taps_1d* ty, int64_t oy, int64_t n,
                                 float* restrict acc) {
  const float w0 = ty->weight[oy * ty->max_taps];
  const uint8_t* src = base + (int64_t)ty->start[oy] * stride;
  for (int64_t i = 0; i < n; i++) {
    acc[i] = w0 * (float)src[i];
  }
  for (int32_t kk = 1; kk < ty->count[oy]; kk++) {
    const float wy = ty->weight[oy * ty->max_taps + kk];
    const uint8_t* s = base + (int64_t)(ty->start[oy] + kk) * stride;
    for (int64_t i = 0; i < n; i++) {
      acc[i] += wy * (float)s[i];
    }
  }
}

/* dst[ox] = sum over taps of the row buffer px (values `elem` apart per pixel), for all outputs. */
static inline void horizontal_pass(const float* restrict px, const xtaps* xt, int64_t elem, int64_t out_w,
                                   float* restrict dst) {
  int64_t ox = 0;
#ifdef __AVX2__
  for (; ox + 8 <= out_w; ox += 8) {
    const __m256i at = _mm256_loadu_si256((const __m256i*)(xt->rel + ox));
    __m256 a = _mm256_mul_ps(_mm256_loadu_ps(xt->wt + ox), _mm256_i32gather_ps(px, at, 4));
    for (int64_t kk = 1; kk < xt->mt; kk++) {
      a = _mm256_fmadd_ps(_mm256_loadu_ps(xt->wt + kk * out_w + ox), _mm256_i32gather_ps(px + elem * kk, at, 4), a);
    }
    _mm256_storeu_ps(dst + ox, a);
  }
#endif
  for (; ox < out_w; ox++) {
    float a = 0.0f;
    for (int64_t kk = 0; kk < xt->mt; kk++) {
      a += xt->wt[kk * out_w + ox] * px[xt->rel[ox] + elem * kk];
    }
    dst[ox] = a;
  }
}

/* Writes v * sc + sh for one output row, mirrored with flip; aligned f32 rows use streaming stores (the
 * batch is written once and read much later, so it need not pass through the cache). */
static inline void store_row(int out_dtype, void* out, int64_t o0, const float* restrict v, int64_t out_w, int flip,
                             float sc, float sh) {
  if (out_dtype == VS_F32) {
    float* dst = (float*)out + o0;
#ifdef __AVX2__
    if (out_w % 8 == 0 && (((uintptr_t)dst) & 31u) == 0) {
      const __m256 vsc = _mm256_set1_ps(sc);
      const __m256 vsh = _mm256_set1_ps(sh);
      const __m256i rev = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
      for (int64_t ox = 0; ox < out_w; ox += 8) {
        const __m256 a = _mm256_fmadd_ps(_mm256_loadu_ps(v + ox), vsc, vsh);
        if (flip) {
          _mm256_stream_ps(dst + out_w - 8 - ox, _mm256_permutevar8x32_ps(a, rev));
        } else {
          _mm256_stream_ps(dst + ox, a);
        }
      }
      return;
    }
#endif
    for (int64_t i = 0; i < out_w; i++) {
      dst[flip ? out_w - 1 - i : i] = v[i] * sc + sh;
    }
  } else {
    uint16_t* dst = (uint16_t*)out + o0;
    for (int64_t i = 0; i < out_w; i++) {
      dst[flip ? out_w - 1 - i : i] = vs_f32_to_bf16(v[i] * sc + sh);
    }
  }
}

static inline float clamp255(float v) {
  return v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
}

/* BT.601 limited range to RGB (swscale's default matrix), in place: y, u, v rows become r, g, b. */
static inline void yuv_to_rgb_row(float* restrict y, float* restrict u, float* restrict v, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float yy = 1.164383f * (y[i] - 16.0f);
    const float uu = u[i] - 128.0f;
    const float vv = v[i] - 128.0f;
    const float r = yy + 1.596027f * vv;
    const float g = yy - 0.391762f * uu - 0.812968f * vv;
    const float b = yy + 2.017232f * uu;
    y[i] = clamp255(r);
    u[i] = clamp255(g);
    v[i] = clamp255(b);
  }
}

int vs_crop_resize_normalize(int out_dtype, int pix_fmt, int64_t n_frames, int64_t h, int64_t w,
                             const uint8_t* frames, int64_t t, const int32_t* frame_idx, float x0, float y0,
                             float crop_w, float crop_h, int64_t out_h, int64_t out_w, int antialias, int flip,
                             const float* mean_std, void* out, vs_stream stream) {
  static const char* k = "vs_crop_resize_normalize";
  int64_t in_numel = 0;
  int64_t out_numel = 0;
  VS_TRY(vs_check_float(k, "out_dtype", out_dtype));
  if (pix_fmt != VS_PIX_RGB24 && pix_fmt != VS_PIX_YUV420P) {
    return vs_fail(VS_ERR_ARG, "%s: pix_fmt %d is neither VS_PIX_RGB24 (0) nor VS_PIX_YUV420P (1)", k, pix_fmt);
  }
  const int yuv = pix_fmt == VS_PIX_YUV420P;
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
  if (yuv && (h % 2 != 0 || w % 2 != 0)) {
    return vs_fail(VS_ERR_ARG, "%s: YUV420P frames need an even size, got %" PRId64 " x %" PRId64, k, w, h);
  }
  if (yuv) {
    in_numel = in_numel / 2; /* 1.5 bytes per pixel */
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

  /* Luma (or RGB) axes, and for YUV the chroma axes: the same box on the half-size planes. */
  taps_1d ty = {.max_taps = max_taps_for(crop_h, out_h, antialias)};
  taps_1d tx = {.max_taps = max_taps_for(crop_w, out_w, antialias)};
  taps_1d cy = {.max_taps = max_taps_for(crop_h / 2.0, out_h, antialias)};
  taps_1d cx = {.max_taps = max_taps_for(crop_w / 2.0, out_w, antialias)};
  if (ty.max_taps > 64 || tx.max_taps > 64) {
    return vs_fail(VS_ERR_ARG,
                   "%s: shrinking %g x %g to %" PRId64 " x %" PRId64 " with antialias needs more than 64 taps; "
                   "decode at a smaller size first",
                   k, (double)crop_w, (double)crop_h, out_w, out_h);
  }
  const int64_t table_bytes = table_bytes_for(out_h, ty.max_taps) + table_bytes_for(out_w, tx.max_taps) +
                              (yuv ? table_bytes_for(out_h, cy.max_taps) + table_bytes_for(out_w, cx.max_taps) : 0);
  char* table = vs_scratch(VS_SCRATCH_CALLER0, table_bytes);
  if (table == NULL) {
    return vs_fail_nomem(k, table_bytes);
  }
  xtaps xl;
  xtaps xc;
  int64_t used = setup_axis(table, &ty, NULL, y0, crop_h, h, out_h, antialias, 0);
  used += setup_axis(table + used, &tx, &xl, x0, crop_w, w, out_w, antialias, yuv ? 1 : 3);
  if (yuv) {
    used += setup_axis(table + used, &cy, NULL, y0 / 2.0, crop_h / 2.0, h / 2, out_h, antialias, 0);
    setup_axis(table + used, &cx, &xc, x0 / 2.0, crop_w / 2.0, w / 2, out_w, antialias, 1);
  }

  float scale[3];
  float shift[3];
  for (int ch = 0; ch < 3; ch++) {
    scale[ch] = (float)(1.0 / (255.0 * (double)mean_std[3 + ch]));
    shift[ch] = (float)(-(double)mean_std[ch] / (double)mean_std[3 + ch]);
  }
  /* Per thread: row buffers (RGB: one interleaved; YUV: one per plane), each followed by zeros so that
   * every output can run over mt taps (the weights past its own taps are 0, the values must be finite),
   * and three output rows. */
  const int64_t elem = yuv ? 1 : 3;
  const int64_t n_l = (tx.hi - tx.lo) * elem;
  const int64_t pad_l = n_l + elem * tx.max_taps + 8;
  const int64_t n_c = yuv ? cx.hi - cx.lo : 0;
  const int64_t pad_c = yuv ? n_c + cx.max_taps + 8 : 0;
  const int64_t row_bytes = (pad_l + 2 * pad_c + 3 * out_w) * (int64_t)sizeof(float);
  const int64_t plane = t * out_h * out_w;
  const int64_t frame_bytes = yuv ? h * w * 3 / 2 : h * w * 3;
  int failed = 0;
#pragma omp parallel num_threads(vs_team(out_numel * (ty.max_taps + tx.max_taps)))
  {
    float* buf = vs_scratch(VS_SCRATCH_WORKER0, row_bytes);
    float* acc = buf;
    float* accu = buf != NULL ? buf + pad_l : NULL;
    float* accv = buf != NULL ? accu + pad_c : NULL;
    float* rows = buf != NULL ? accv + pad_c : NULL;
    if (buf != NULL) {
      for (int64_t i = n_l; i < pad_l; i++) {
        acc[i] = 0.0f;
      }
      for (int64_t i = n_c; i < pad_c; i++) {
        accu[i] = accv[i] = 0.0f;
      }
    }
#pragma omp for schedule(static)
    for (int64_t r = 0; r < t * out_h; r++) {
      if (buf == NULL) {
#pragma omp atomic write
        failed = 1;
        continue;
      }
      const int64_t f = r / out_h;
      const int64_t oy = r % out_h;
      const uint8_t* src = frames + (frame_idx != NULL ? frame_idx[f] : f) * frame_bytes;
      const int64_t line = f * out_h * out_w + oy * out_w;
      if (!yuv) {
        vertical_pass(src + tx.lo * 3, w * 3, &ty, oy, n_l, acc);
        for (int ch = 0; ch < 3; ch++) {
          horizontal_pass(acc + ch, &xl, 3, out_w, rows);
          store_row(out_dtype, out, ch * plane + line, rows, out_w, flip, scale[ch], shift[ch]);
        }
      } else {
        const uint8_t* pu = src + h * w;
        const uint8_t* pv = pu + (h / 2) * (w / 2);
        vertical_pass(src + tx.lo, w, &ty, oy, n_l, acc);
        vertical_pass(pu + cx.lo, w / 2, &cy, oy, n_c, accu);
        vertical_pass(pv + cx.lo, w / 2, &cy, oy, n_c, accv);
        horizontal_pass(acc, &xl, 1, out_w, rows);
        horizontal_pass(accu, &xc, 1, out_w, rows + out_w);
        horizontal_pass(accv, &xc, 1, out_w, rows + 2 * out_w);
        yuv_to_rgb_row(rows, rows + out_w, rows + 2 * out_w, out_w);
        for (int ch = 0; ch < 3; ch++) {
          store_row(out_dtype, out, ch * plane + line, rows + ch * out_w, out_w, flip, scale[ch], shift[ch]);
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
