// Data augmentation: decoded uint8 frames (RGB24 or YUV420P) to one normalised (3, t, out_h, out_w) clip on
// the GPU, so that only uint8 frames cross the bus. One thread per output pixel (all three channels); the
// triangle-filter taps are evaluated on the fly and normalised per axis, which matches the host build's
// separable tables.
#include <inttypes.h>

#include "common.cuh"

namespace vsw {
namespace {

constexpr int kAugMaxT = 256;
constexpr int kAugThreads = 256;

// One axis of the resampling: output o samples source coordinate x0 + (o + 0.5) * scale with a triangle of
// radius `support`, over the crop window [lo, hi).
struct Axis {
  float x0, scale, support;
  int lo, hi;
};

// Kernel arguments passed by value: the frame list and the per-channel affine map come from host memory.
struct AugParams {
  int64_t h, w, t, out_h, out_w, frame_bytes;
  Axis ax, ay;  // luma (or RGB) axes
  Axis cx, cy;  // chroma axes (YUV420P)
  int yuv, flip;
  float mul[3], add[3];
  int32_t idx[kAugMaxT];
};

__device__ __forceinline__ float tri(int j, float center, float support) {
  const float d = fabsf(float(j) + 0.5f - center) / support;
  return d < 1.0f ? 1.0f - d : 0.0f;
}

// Taps [a, b] of output o along one axis and whether any weight is non-zero (else the nearest window pixel).
__device__ __forceinline__ void taps(const Axis& x, int o, int* a, int* b, float* center, bool* any) {
  const float c = x.x0 + (float(o) + 0.5f) * x.scale;
  const int first = int(floorf(c - x.support - 0.5f));
  const int last = int(ceilf(c + x.support - 0.5f));
  *a = first < x.lo ? x.lo : first;
  *b = last > x.hi - 1 ? x.hi - 1 : last;
  float s = 0.0f;
  for (int j = *a; j <= *b; ++j) s += tri(j, c, x.support);
  *any = s > 0.0f;
  if (!*any) *a = *b = c < float(x.lo) ? x.lo : x.hi - 1;
  *center = c;
}

// The weighted mean of channel values `elem` apart in a plane whose rows are `stride` bytes apart.
__device__ __forceinline__ float sample(const uint8_t* base, int64_t stride, int elem, const Axis& ax,
                                        const Axis& ay, int ox, int oy) {
  int xa, xb, ya, yb;
  float cx, cy;
  bool anyx, anyy;
  taps(ax, ox, &xa, &xb, &cx, &anyx);
  taps(ay, oy, &ya, &yb, &cy, &anyy);
  float acc = 0.0f, norm = 0.0f;
  for (int y = ya; y <= yb; ++y) {
    const float wy = anyy ? tri(y, cy, ay.support) : 1.0f;
    if (wy == 0.0f) continue;
    const uint8_t* row = base + int64_t(y) * stride;
    for (int x = xa; x <= xb; ++x) {
      const float wgt = wy * (anyx ? tri(x, cx, ax.support) : 1.0f);
      acc += wgt * float(row[int64_t(x) * elem]);
      norm += wgt;
    }
  }
  return acc / norm;
}

template <typename TO>
// __grid_constant__: sample() takes the axes by reference and idx[] is indexed at run time; without it
// the parameter block is copied to local memory in every thread.
__global__ void __launch_bounds__(kAugThreads)
    crop_resize_kernel(__grid_constant__ const AugParams p, const uint8_t* frames, TO* out) {
  const int64_t plane = p.t * p.out_h * p.out_w;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < plane; i += stride) {
    const int ox = int(i % p.out_w);
    const int oy = int((i / p.out_w) % p.out_h);
    const int f = int(i / (p.out_w * p.out_h));
    const uint8_t* src = frames + int64_t(p.idx[f]) * p.frame_bytes;
    float rgb[3];
    if (!p.yuv) {
#pragma unroll  // rgb[] stays in registers only when every index is a constant
      for (int c = 0; c < 3; ++c) rgb[c] = sample(src + c, p.w * 3, 3, p.ax, p.ay, ox, oy);
    } else {
      const uint8_t* pu = src + p.h * p.w;
      const uint8_t* pv = pu + (p.h / 2) * (p.w / 2);
      const float y = 1.164383f * (sample(src, p.w, 1, p.ax, p.ay, ox, oy) - 16.0f);
      const float u = sample(pu, p.w / 2, 1, p.cx, p.cy, ox, oy) - 128.0f;
      const float v = sample(pv, p.w / 2, 1, p.cx, p.cy, ox, oy) - 128.0f;
      rgb[0] = fminf(255.0f, fmaxf(0.0f, y + 1.596027f * v));
      rgb[1] = fminf(255.0f, fmaxf(0.0f, y - 0.391762f * u - 0.812968f * v));
      rgb[2] = fminf(255.0f, fmaxf(0.0f, y + 2.017232f * u));
    }
    const int64_t o = (int64_t(f) * p.out_h + oy) * p.out_w + (p.flip ? p.out_w - 1 - ox : ox);
#pragma unroll
    for (int c = 0; c < 3; ++c) out[c * plane + o] = from_f<TO>(rgb[c] * p.mul[c] + p.add[c]);
  }
}

// The axis of a crop [x0, x0 + crop) of a `size`-pixel source resized to `out` outputs.
Axis make_axis(double x0, double crop, int64_t size, int64_t out, int antialias) {
  Axis a;
  a.x0 = float(x0);
  a.scale = float(crop / double(out));
  a.support = antialias && a.scale > 1.0f ? a.scale : 1.0f;
  const int64_t lo = int64_t(floor(x0)), hi = int64_t(ceil(x0 + crop));
  a.lo = int(lo < 0 ? 0 : lo);
  a.hi = int(hi > size ? size : hi);
  if (a.hi <= a.lo) a.hi = a.lo + 1;
  return a;
}

}  // namespace
}  // namespace vsw

extern "C" int vs_crop_resize_normalize(int out_dtype, int pix_fmt, int64_t n_frames, int64_t h, int64_t w,
                                        const uint8_t* frames, int64_t t, const int32_t* frame_idx, float x0,
                                        float y0, float crop_w, float crop_h, int64_t out_h, int64_t out_w,
                                        int antialias, int flip, const float* mean_std, void* out,
                                        vs_stream stream) {
  using namespace vsw;
  static const char* fn = "vs_crop_resize_normalize";
  VSW_TRY(check_float_dtype(fn, out_dtype));
  if (pix_fmt != VS_PIX_RGB24 && pix_fmt != VS_PIX_YUV420P) {
    return vs_fail(VS_ERR_ARG, "%s: pix_fmt %d is neither VS_PIX_RGB24 (0) nor VS_PIX_YUV420P (1)", fn, pix_fmt);
  }
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
  const int yuv = pix_fmt == VS_PIX_YUV420P;
  if (yuv && (h % 2 != 0 || w % 2 != 0)) {
    return vs_fail(VS_ERR_ARG, "%s: YUV420P frames need an even size, got %" PRId64 " x %" PRId64, fn, w, h);
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
  p.h = h;
  p.w = w;
  p.t = t;
  p.out_h = out_h;
  p.out_w = out_w;
  p.frame_bytes = yuv ? h * w * 3 / 2 : h * w * 3;
  p.yuv = yuv;
  p.ax = make_axis(x0, crop_w, w, out_w, antialias);
  p.ay = make_axis(y0, crop_h, h, out_h, antialias);
  p.cx = make_axis(x0 / 2.0, crop_w / 2.0, w / 2, out_w, antialias);
  p.cy = make_axis(y0 / 2.0, crop_h / 2.0, h / 2, out_h, antialias);
  if (p.ax.support > 31.0f || p.ay.support > 31.0f) {
    return vs_fail(VS_ERR_ARG,
                   "%s: shrinking %g x %g to %" PRId64 " x %" PRId64 " with antialias needs more than 64 taps; "
                   "decode at a smaller size first",
                   fn, double(crop_w), double(crop_h), out_w, out_h);
  }
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
