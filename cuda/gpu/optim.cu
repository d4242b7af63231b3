// Optimiser kernels: gradient norm (deterministic), clip coefficient, AdamW over flat f32 buffers, and the
// non-finite check used by the loss-scale / skip-step logic.
#include <math.h>

#include "reduce.cuh"

namespace vsw {
namespace {

struct Square {
  __device__ float operator()(float g, float) const { return g * g; }
};

struct SqrtOf {
  __device__ float operator()(double sum) const { return float(sqrt(sum)); }
};

__global__ void clip_coef_kernel(const float* norm, float max_norm, float* coef) {
  const float c = max_norm / (norm[0] + 1e-6f);
  // Written so that a NaN norm gives a NaN coefficient (as torch.clamp does) instead of 1.
  coef[0] = c > 1.0f ? 1.0f : c;
}

struct AdamParams {
  float lr_decay;    // 1 - lr * weight_decay
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float step_size;   // lr / (1 - beta1^step)
  float bc2_sqrt;    // sqrt(1 - beta2^step)
  float eps;
};

__device__ __forceinline__ void adam_one(const AdamParams& h, float gs, float& p, float g, float& m, float& v) {
  g *= gs;
  p *= h.lr_decay;
  m = h.beta1 * m + h.one_minus_beta1 * g;
  v = h.beta2 * v + h.one_minus_beta2 * g * g;
  const float denom = sqrtf(v) / h.bc2_sqrt + h.eps;
  p -= h.step_size * (m / denom);
}

struct alignas(8) Bf16x4 {
  bf16 v[4];
};

template <bool VEC>
__global__ void __launch_bounds__(256)
    adamw_kernel(int64_t n, float* param, bf16* param_bf16, const float* grad, float* m, float* v, AdamParams h,
                 const float* grad_scale) {
  const float gs = grad_scale ? grad_scale[0] : 1.0f;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t nv = n / 4;
    for (int64_t i = t; i < nv; i += stride) {
      float4 p = reinterpret_cast<float4*>(param)[i];
      const float4 g = reinterpret_cast<const float4*>(grad)[i];
      float4 mm = reinterpret_cast<float4*>(m)[i];
      float4 vv = reinterpret_cast<float4*>(v)[i];
      adam_one(h, gs, p.x, g.x, mm.x, vv.x);
      adam_one(h, gs, p.y, g.y, mm.y, vv.y);
      adam_one(h, gs, p.z, g.z, mm.z, vv.z);
      adam_one(h, gs, p.w, g.w, mm.w, vv.w);
      reinterpret_cast<float4*>(param)[i] = p;
      reinterpret_cast<float4*>(m)[i] = mm;
      reinterpret_cast<float4*>(v)[i] = vv;
      if (param_bf16) {
        Bf16x4 b;
        b.v[0] = __float2bfloat16_rn(p.x);
        b.v[1] = __float2bfloat16_rn(p.y);
        b.v[2] = __float2bfloat16_rn(p.z);
        b.v[3] = __float2bfloat16_rn(p.w);
        reinterpret_cast<Bf16x4*>(param_bf16)[i] = b;
      }
    }
    done = nv * 4;
  }
  for (int64_t i = done + t; i < n; i += stride) {
    float p = param[i], mm = m[i], vv = v[i];
    adam_one(h, gs, p, grad[i], mm, vv);
    param[i] = p;
    m[i] = mm;
    v[i] = vv;
    if (param_bf16) param_bf16[i] = __float2bfloat16_rn(p);
  }
}

template <typename T, int E, bool VEC>
__global__ void __launch_bounds__(256) nonfinite_kernel(int64_t n, const T* x, int32_t* flag) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  bool bad = false;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t nv = n / E;
    for (int64_t i = t; i < nv; i += stride) {
      float vals[E];
      load_pack<T, E>(x + i * E, vals);
#pragma unroll
      for (int j = 0; j < E; ++j) bad |= !isfinite(vals[j]);
    }
    done = nv * E;
  }
  for (int64_t i = done + t; i < n; i += stride) bad |= !isfinite(to_f(x[i]));
  // Every writer stores the same 1, so the race is benign and the result deterministic.
  if (__any_sync(0xffffffffu, bad) && (threadIdx.x & 31) == 0) flag[0] = 1;
}

}  // namespace
}  // namespace vsw

using namespace vsw;

int vs_grad_norm(int64_t n, const float* g, float* norm, vs_stream stream) {
  static const char* fn = "vs_grad_norm";
  VSW_TRY(check_size(fn, "n", n));
  VSW_TRY(check_ptr(fn, "norm", norm));
  cudaStream_t s = as_stream(stream);
  if (n == 0) {
    VSW_CUDA(fn, cudaMemsetAsync(norm, 0, sizeof(float), s));
    return VS_OK;
  }
  VSW_TRY(check_ptr(fn, "g", g));
  float* scratch = nullptr;
  VSW_TRY(stream_scratch(fn, s, &scratch));
  return reduce_to_scalar<float, false>(fn, n, g, nullptr, Square{}, SqrtOf{}, scratch, norm, s);
}

int vs_clip_coef(const float* norm, float max_norm, float* coef, vs_stream stream) {
  static const char* fn = "vs_clip_coef";
  VSW_TRY(check_ptr(fn, "norm", norm));
  VSW_TRY(check_ptr(fn, "coef", coef));
  clip_coef_kernel<<<1, 1, 0, as_stream(stream)>>>(norm, max_norm, coef);
  return vs_check_launch("vs_clip_coef (clip_coef_kernel)");
}

int vs_adamw(int64_t n, float* param, void* param_bf16, const float* grad, float* m, float* v, float lr, float beta1,
             float beta2, float eps, float weight_decay, int64_t step, const float* grad_scale, vs_stream stream) {
  static const char* fn = "vs_adamw";
  VSW_TRY(check_size(fn, "n", n));
  if (step < 1) return vs_fail(VS_ERR_ARG, "%s: step = %lld must count from 1", fn, (long long)step);
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "param", param));
  VSW_TRY(check_ptr(fn, "grad", grad));
  VSW_TRY(check_ptr(fn, "m", m));
  VSW_TRY(check_ptr(fn, "v", v));
  // Scalars in double, rounded once, as torch.optim.AdamW does with its Python-float hyperparameters.
  AdamParams h;
  h.lr_decay = float(1.0 - double(lr) * double(weight_decay));
  h.beta1 = beta1;
  h.one_minus_beta1 = float(1.0 - double(beta1));
  h.beta2 = beta2;
  h.one_minus_beta2 = float(1.0 - double(beta2));
  h.step_size = float(double(lr) / (1.0 - pow(double(beta1), double(step))));
  h.bc2_sqrt = float(sqrt(1.0 - pow(double(beta2), double(step))));
  h.eps = eps;
  bf16* pb = static_cast<bf16*>(param_bf16);
  const bool vec = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v) &&
                   (pb == nullptr || (reinterpret_cast<uintptr_t>(pb) & 7u) == 0) && n >= 4;
  cudaStream_t s = as_stream(stream);
  if (vec) {
    adamw_kernel<true><<<grid_for(n / 4, 256), 256, 0, s>>>(n, param, pb, grad, m, v, h, grad_scale);
  } else {
    adamw_kernel<false><<<grid_for(n, 256), 256, 0, s>>>(n, param, pb, grad, m, v, h, grad_scale);
  }
  return vs_check_launch("vs_adamw (adamw_kernel)");
}

int vs_nonfinite(int dtype, int64_t n, const void* x, int32_t* flag, vs_stream stream) {
  static const char* fn = "vs_nonfinite";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "n", n));
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "flag", flag));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int E = int(16 / sizeof(T));
    const T* p = static_cast<const T*>(x);
    cudaStream_t s = as_stream(stream);
    if (aligned16(p) && n >= E) {
      nonfinite_kernel<T, E, true><<<grid_for(n / E, 256), 256, 0, s>>>(n, p, flag);
    } else {
      nonfinite_kernel<T, E, false><<<grid_for(n, 256), 256, 0, s>>>(n, p, flag);
    }
    return vs_check_launch("vs_nonfinite (nonfinite_kernel)");
  });
}
