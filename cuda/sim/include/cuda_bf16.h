// bfloat16 as cuda_bf16.h defines it, for the simulator build: conversions round to nearest even as
// the device's cvt.rn.bf16.f32 does, NaN stays a quiet NaN.
#pragma once

#include <stdint.h>
#include <string.h>
#include <math.h>

struct __nv_bfloat16_raw {
  unsigned short x;
};

struct alignas(2) __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  constexpr __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};

struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

inline unsigned short vsim_f32_to_bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}

inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16_raw{vsim_f32_to_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }

// Double to bf16 in one rounding, as cvt.rn.bf16.f64: the double is first narrowed to float rounding to
// odd (truncate, then set the last bit if anything was lost), which makes the second rounding exact.
inline __nv_bfloat16 __double2bfloat16(double d) {
  if (d != d) return __nv_bfloat16_raw{0x7fc0};
  float f = (float)d;
  if (fabs((double)f) > fabs(d)) f = nextafterf(f, 0.0f);
  if ((double)f != d) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u |= 1u;
    memcpy(&f, &u, 4);
  }
  return __float2bfloat16_rn(f);
}

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = uint32_t(h.__x) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
