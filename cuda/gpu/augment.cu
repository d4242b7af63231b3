// Data augmentation: decoded uint8 RGB frames to one normalised (3, t, out_h, out_w) clip on the GPU, so that
// only uint8 frames cross the bus. One thread per output pixel (all three channels); the triangle-filter taps
// are evaluated on the fly and normalised per axis, which matches the host build's separable tables.
#include <inttypes.h>

#include "common.cuh"

namespace vsw {
namespace {

constexpr int kAugMaxT = 256;
constexpr int kAugThreads = 256;

// Kernel arguments passed by value: the frame list and the per-channel affine map come from host memory.
struct AugParams {
  int64_t n_frames, h, w, t, out_h, out_w;
  float x0, y0, scale_x, scale_y, support_x, support_y;
  int lo_x, hi_x, lo_y, hi_y;  // the crop window [lo, hi) per axis
  int flip;
  float mul[3], add[3];
  int32_t idx[kAugMaxT];
};

// Taps [a, b] and the sum of their weights for output coordinate o along one axis.
__device__ __forceinline__ void axis_taps(int o, float x0, float scale, float support, int lo, int hi, int* a,
                                          int* b, float* center) {
  const float c = x0 + (float(o) + 0.5f) * scale;
  int first = int(floorf(c - support - 0.5f));
  int last = int(ceilf(c + support - 0.5f));
  *a = first < lo ? lo : first;
  *b = last > hi - 1 ? hi - 1 : last;
  *center = c;
}

__device__ __forceinline__ float tri(int j, float center, float support) {
  const float d = fabsf(float(j) + 0.5f - center) / support;
  return d < 1.0f ? 1.0f - d : 0.0f;
}

template <typename TO>
__global__ void __launch_bounds__(kAugThreads) crop_resize_kernel(AugParams p, const uint8_t* frames, TO* out) {
  const int64_t plane = p.t * p.out_h * p.out_w;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < plane; i += stride) {
    const int ox = int(i % p.out_w);
    const int oy = int((i / p.out_w) % p.out_h);
    const int f = int(i / (p.out_w * p.out_h));
    int ya, yb, xa, xb;
    float cy, cx;
    axis_taps(oy, p.y0, p.scale_y, p.support_y, p.lo_y, p.hi_y, &ya, &yb, &cy);
    axis_taps(ox, p.x0, p.scale_x, p.support_x, p.lo_x, p.hi_x, &xa, &xb, &cx);
    float sy = 0.0f, sx = 0.0f;
    for (int y = ya; y <= yb; ++y) sy += tri(y, cy, p.support_y);
    for (int x = xa; x <= xb; ++x) sx += tri(x, cx, p.support_x);
    if (sy <= 0.0f) {  // the centre lies outside the window: nearest window pixel
      ya = yb = cy < float(p.lo_y) ? p.lo_y : p.hi_y - 1;
    }
    if (sx <= 0.0f) {
      xa = xb = cx < float(p.lo_x) ? p.lo_x : p.hi_x - 1;
    }
    const uint8_t* src = frames + int64_t(p.idx[f]) * p.h * p.w * 3;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, norm = 0.0f;
    for (int y = ya; y <= yb; ++y) {
      const float wy = sy > 0.0f ? tri(y, cy, p.support_y) : 1.0f;
      if (wy == 0.0f) continue;
      const uint8_t* rowp = src + int64_t(y) * p.w * 3;
      for (int x = xa; x <= xb; ++x) {
        const float wgt = wy * (sx > 0.0f ? tri(x, cx, p.support_x) : 1.0f);
        a0 += wgt * float(rowp[3 * x]);
        a1 += wgt * float(rowp[3 * x + 1]);
        a2 += wgt * float(rowp[3 * x + 2]);
        norm += wgt;
      }
    }
    const float inv = 1.0f / norm;
    const int64_t o = (int64_t(f) * p.out_h + oy) * p.out_w + (p.flip ? p.out_w - 1 - ox : ox);
    out[o] = from_f<TO>(a0 * inv * p.mul[0] + p.add[0]);
    out[plane + o] = from_f<TO>(a1 * inv * p.mul[1] + p.add[1]);
    out[2 * plane + o] = from_f<TO>(a2 * inv * p.mul[2] + p.add[2]);
  }
}

}  // namespace
}  // namespace vsw

extern "C" int vs_crop_resize_normalize(int out_dtype, int64_t n_frames, int64_t h, int64_t w,
                                        const uint8_t* frames, int64_t t, const int32_t* frame_idx, float x0,
                                        float y0, float crop_w, float crop_h, int64_t out_h, int64_t out_w,
                                        int antialias, int flip, const float* mean_std, void* out,
                                        vs_stream stream) {
  using namespace vsw;
  static const char* fn = "vs_crop_resize_normalize";
  VSW_TRY(check_float_dtype(fn, out_dtype));
  VSW_TRY(check_size(fn, "n_frames", n_frames));
  VSW_TRY(check_size(fn, "h", h));
  VSW_TRY(check_size(fn, "w", w));
  VSW_TRY(check_size(fn, "t", t));
  VSW_TRY(check_size(fn, "out_h", out_h));
  VSW_TRY(check_size(fn, "out_w", out_w));
  if ((antialias != 0 && antialias != 1) || (flip != 0 && flip != 1)) {
    return vs_fail(VS_ERR_ARG, "%s: antialias and flip must be 0 or 1, got %d and %d", fn, antialias, flip);
  }
  if (t > kAugMaxT) {
    return vs_fail(VS_ERR_ARG, "%s: t %" PRId64 " exceeds the %d frames a clip may have", fn, t, kAugMaxT);
  }
  if (t == 0 || out_h == 0 || out_w == 0) return VS_OK;
  if (h < 1 || w < 1 || n_frames < 1) {
    return vs_fail(VS_ERR_ARG, "%s: the frames are empty (n_frames %" PRId64 ", h %" PRId64 ", w %" PRId64 ")", fn,
                   n_frames, h, w);
  }
  if (out_h > INT32_MAX || out_w > INT32_MAX || h > INT32_MAX || w > INT32_MAX) {
    return vs_fail(VS_ERR_ARG, "%s: sizes must fit in 32 bits (h %" PRId64 ", w %" PRId64 ")", fn, h, w);
  }
  const double tol = 1e-3;
  if (!(isfinite(x0) && isfinite(y0) && crop_w > 0.0f && crop_h > 0.0f && x0 >= -tol && y0 >= -tol &&
        double(x0) + double(crop_w) <= double(w) + tol && double(y0) + double(crop_h) <= double(h) + tol)) {
    return vs_fail(VS_ERR_ARG,
                   "%s: the crop box x0 %g, y0 %g, %g x %g must have a positive size and lie inside the %" PRId64
                   " x %" PRId64 " frame",
                   fn, double(x0), double(y0), double(crop_w), double(crop_h), w, h);
  }
  if (frame_idx == nullptr && t > n_frames) {
    return vs_fail(VS_ERR_ARG, "%s: t %" PRId64 " exceeds n_frames %" PRId64 " and frame_idx is NULL", fn, t,
                   n_frames);
  }
  VSW_TRY(check_ptr(fn, "frames", frames));
  VSW_TRY(check_ptr(fn, "out", out));
  VSW_TRY(check_ptr(fn, "mean_std", mean_std));
  AugParams p;
  p.n_frames = n_frames;
  p.h = h;
  p.w = w;
  p.t = t;
  p.out_h = out_h;
  p.out_w = out_w;
  p.x0 = x0;
  p.y0 = y0;
  p.scale_x = crop_w / float(out_w);
  p.scale_y = crop_h / float(out_h);
  p.support_x = antialias && p.scale_x > 1.0f ? p.scale_x : 1.0f;
  p.support_y = antialias && p.scale_y > 1.0f ? p.scale_y : 1.0f;
  if (p.support_x > 31.0f || p.support_y > 31.0f) {
    return vs_fail(VS_ERR_ARG,
                   "%s: shrinking %g x %g to %" PRId64 " x %" PRId64 " with antialias needs more than 64 taps; "
                   "decode at a smaller size first",
                   fn, double(crop_w), double(crop_h), out_w, out_h);
  }
  const int64_t lo_x = int64_t(floor(double(x0))), hi_x = int64_t(ceil(double(x0) + double(crop_w)));
  const int64_t lo_y = int64_t(floor(double(y0))), hi_y = int64_t(ceil(double(y0) + double(crop_h)));
  p.lo_x = int(lo_x < 0 ? 0 : lo_x);
  p.hi_x = int(hi_x > w ? w : hi_x);
  p.lo_y = int(lo_y < 0 ? 0 : lo_y);
  p.hi_y = int(hi_y > h ? h : hi_y);
  if (p.hi_x <= p.lo_x) p.hi_x = p.lo_x + 1;
  if (p.hi_y <= p.lo_y) p.hi_y = p.lo_y + 1;
  p.flip = flip;
  for (int ch = 0; ch < 3; ++ch) {
    const float m = mean_std[ch], s = mean_std[3 + ch];
    if (!(isfinite(m) && isfinite(s) && s != 0.0f)) {
      return vs_fail(VS_ERR_ARG, "%s: mean_std for channel %d is mean %g, std %g; both must be finite, std non-zero",
                     fn, ch, double(m), double(s));
    }
    p.mul[ch] = float(1.0 / (255.0 * double(s)));
    p.add[ch] = float(-double(m) / double(s));
  }
  for (int64_t i = 0; i < t; ++i) {
    const int64_t v = frame_idx ? int64_t(frame_idx[i]) : i;
    if (v < 0 || v >= n_frames) {
      return vs_fail(VS_ERR_ARG, "%s: frame_idx[%" PRId64 "] = %" PRId64 " is outside [0, %" PRId64 ")", fn, i, v,
                     n_frames);
    }
    p.idx[i] = int32_t(v);
  }
  const int64_t items = t * out_h * out_w;
  const unsigned grid = grid_for(items, kAugThreads);
  if (out_dtype == VS_F32) {
    crop_resize_kernel<float><<<grid, kAugThreads, 0, as_stream(stream)>>>(p, frames, static_cast<float*>(out));
  } else {
    crop_resize_kernel<bf16><<<grid, kAugThreads, 0, as_stream(stream)>>>(p, frames, static_cast<bf16*>(out));
  }
  return vs_check_launch(fn);
}
