/*
 * exp and GELU written so that GCC vectorises the loops that call them: straight-line code, no
 * table lookups, no libm calls, branches expressed as selects. fmaf is exact rounding whether or not
 * the target has FMA, so a portable build gives the same bits as an -mfma one (only slower).
 *
 * Accuracy, measured against glibc's double exp/erfc over every f32 in the ranges used (see
 * tests/kernels_test.ts for the checks through the ABI): vs_expf within 1 ulp; vs_gelu_f32 and
 * vs_gelu_grad_f32 within a few ulp of the double formula rounded once (the grad near its zero crossing
 * at x = -0.75 is limited by cancellation, as any f32 evaluation is).
 */
#ifndef VSWIFT_FMATH_H
#define VSWIFT_FMATH_H

#include <stdint.h>
#include <string.h>

static inline float vs_bits_to_f32(int32_t i) {
  float f;
  memcpy(&f, &i, sizeof f);
  return f;
}

/* e^x for f32 x. Range reduction x = k ln2 + r with |r| <= ln2/2, a degree 7 Taylor polynomial of e^r
 * (truncation error below 2^-27), and 2^k applied as two exact power-of-two factors so that results in
 * the subnormal range are rounded once instead of flushed. NaN stays NaN, x > 88.73 gives +inf. */
static inline float vs_expf(float x) {
  x = x < -104.0f ? -104.0f : x;
  x = x > 89.0f ? 89.0f : x;
  const float k = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = __builtin_fmaf(k, -0.693145751953125f, x); /* ln2 high part: k * it is exact */
  r = __builtin_fmaf(k, -1.42860682030941723e-06f, r);
  float p = 1.98412698412698413e-04f;
  p = __builtin_fmaf(p, r, 1.38888888888888889e-03f);
  p = __builtin_fmaf(p, r, 8.33333333333333333e-03f);
  p = __builtin_fmaf(p, r, 4.16666666666666667e-02f);
  p = __builtin_fmaf(p, r, 1.66666666666666667e-01f);
  p = __builtin_fmaf(p, r, 0.5f);
  p = __builtin_fmaf(p, r, 1.0f);
  p = __builtin_fmaf(p, r, 1.0f);
  const int32_t ki = (int32_t)k;
  const int32_t k1 = ki / 2;
  const int32_t k2 = ki - k1;
  return p * vs_bits_to_f32((k1 + 127) << 23) * vs_bits_to_f32((k2 + 127) << 23);
}

/* e^x for double x, the same scheme with a degree 12 polynomial (relative error below 1e-15). Only
 * used for x <= 0 here; x < -745 gives 0. */
static inline double vs_exp_f64(double x) {
  x = x < -746.0 ? -746.0 : x;
  x = x > 709.0 ? 709.0 : x;
  const double k = __builtin_floor(x * 1.44269504088896340736 + 0.5);
  double r = __builtin_fma(k, -6.93147180369123816490e-01, x); /* ln2 high part: k * it is exact */
  r = __builtin_fma(k, -1.90821492927058770002e-10, r);
  double p = 2.08767569878680989792e-09; /* 1 / 12! */
  static const double c[] = {2.50521083854417187751e-08, 2.75573192239858906526e-07,
                             2.75573192239858906526e-06, 2.48015873015873015873e-05,
                             1.98412698412698412698e-04, 1.38888888888888888889e-03,
                             8.33333333333333333333e-03, 4.16666666666666666667e-02,
                             1.66666666666666666667e-01, 0.5, 1.0, 1.0};
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++) {
    p = __builtin_fma(p, r, c[i]);
  }
  const int32_t ki = (int32_t)k; /* 32-bit: AVX2 converts doubles to int32 lanes, not int64 */
  const int32_t k1 = ki / 2;
  const int32_t k2 = ki - k1;
  double s1;
  double s2;
  const int64_t b1 = (int64_t)(k1 + 1023) << 52;
  const int64_t b2 = (int64_t)(k2 + 1023) << 52;
  memcpy(&s1, &b1, sizeof s1);
  memcpy(&s2, &b2, sizeof s2);
  return p * s1 * s2;
}

/* The standard normal CDF Phi(x) and e^(-x^2 / 2), the pieces of GELU and its derivative, computed in
 * double lanes: an f32 evaluation of the same polynomials measured up to 5 ulp off in the tails (the
 * rounding of Horner's steps and of e^(-x^2/2)), while the double one rounds to the nearest f32 except
 * in rare ties, which keeps the host build the reference. AVX2 runs 4 of these lanes at a time.
 *
 * |x| <= 1: Phi = 0.5 + x Q(x^2) with Q a degree 10 fit of erf(x / sqrt 2) / (2x) (relative error
 * 1.3e-15), so that around x = -0.75, where the derivative Phi + x phi cancels to 0, its absolute error
 * stays near 1e-16 as with libm's erfc. Elsewhere erfc(z), z = |x| / sqrt 2, is e^(-z^2) E(t) with E = erfcx fitted as a degree 12
 * polynomial in t = 1 / (1 + z / 2) over z in [0.35, 10] (relative error 3e-11); beyond z = 10 the
 * e^(-z^2) factor underflows f32 whatever E is. Coefficients are our own least-squares fits. */
static inline void vs_phi(double x, double* phi_cdf, double* gauss) {
  static const double q[] = {-2.71607567130843025e-13, -9.09743915126224422e-11, 2.23281590497133903e-09,
                             -4.11845073131826960e-08, 6.65942819529573206e-07, -9.44464584754106446e-06,
                             1.15434685093139438e-04,  -1.18732821512274891e-03, 9.97355701000987409e-03,
                             -6.64903800669047473e-02, 3.98942280401432425e-01};
  static const double e[] = {-3.16295416954629829e-02, 2.39806723746094297e-01, -7.73551380252431198e-01,
                             1.35192151210173406e+00, -1.33707480155258573e+00, 7.46722971875731001e-01,
                             -3.56117968102979021e-01, 1.93603262512507562e-01, 1.51881765112822448e-01,
                             2.50611587181030160e-01, 2.81708574417309399e-01, 2.82118212349508457e-01,
                             -6.37159492984235800e-07};
  const double ax = __builtin_fabs(x);
  const double x2 = x * x;
  double qv = q[0];
#pragma GCC unroll 10
  for (int i = 1; i < 11; i++) {
    qv = __builtin_fma(qv, x2, q[i]);
  }
  const double near = __builtin_fma(x, qv, 0.5);
  const double xc = ax < 40.0 ? ax : 40.0; /* e^(-800) is 0; keeps inf and NaN out of the exp */
  const double g = vs_exp_f64(-0.5 * xc * xc);
  const double t = 1.0 / __builtin_fma(ax, 0.353553390593273762, 1.0);
  double p = e[0];
#pragma GCC unroll 12
  for (int i = 1; i < 13; i++) {
    p = __builtin_fma(p, t, e[i]);
  }
  const double half_erfc = 0.5 * g * p;
  const double far = x < 0.0 ? half_erfc : 1.0 - half_erfc;
  *phi_cdf = ax <= 1.0 ? near : far;
  *gauss = g;
}

/* gelu(x) = x Phi(x), the exact erf form. */
static inline double vs_gelu(double x) {
  double cdf;
  double g;
  vs_phi(x, &cdf, &g);
  return x * cdf;
}

/* d gelu / dx = Phi(x) + x phi(x), phi the standard normal density e^(-x^2/2) / sqrt(2 pi). */
static inline double vs_gelu_grad(double x) {
  double cdf;
  double g;
  vs_phi(x, &cdf, &g);
  return __builtin_fma(x * 0.398942280401432678, g, cdf);
}

#endif /* VSWIFT_FMATH_H */
