// Losses: mean squared error (the MAE pixel loss) and softmax cross-entropy with soft targets. Losses are
// device scalars reduced deterministically (reduce.cuh), so a training step never synchronises.
#include "reduce.cuh"

namespace vsw {
namespace {

struct SquaredDiff {
  __device__ float operator()(float p, float t) const {
    const float d = p - t;
    return d * d;
  }
};

struct MeanOf {
  double n;
  __device__ float operator()(double sum) const { return float(sum / n); }
};

// dpred = 2 (pred - target) / n * dloss[0], in that order.
struct MseGrad {
  float nf;
  const float* dloss;
  __device__ float operator()(float p, float t) const { return 2.0f * (p - t) / nf * __ldg(dloss); }
};

constexpr int kXentWarps = 8;

// One warp per row: lse = max + log(sum exp(x - max)); row loss = sum_k t_k (lse - x_k).
template <typename T>
__global__ void __launch_bounds__(kXentWarps * 32)
    xent_fwd_kernel(int64_t rows, int64_t classes, const T* logits, const float* targets, float* lse_out,
                    float* row_loss) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kXentWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const T* x = logits + row * classes;
  const float* t = targets + row * classes;
  float m = -INFINITY;
  for (int64_t k = lane; k < classes; k += 32) m = fmaxf(m, to_f(x[k]));
  m = warp_max(m);
  float s = 0.0f;
  for (int64_t k = lane; k < classes; k += 32) s += expf(to_f(x[k]) - m);
  const float lse = m + logf(warp_sum(s));
  float l = 0.0f;
  // Zero targets are skipped, as in the host build: a -inf logit with no weight must add 0, not 0 * inf.
  for (int64_t k = lane; k < classes; k += 32) {
    const float tk = t[k];
    if (tk != 0.0f) l += tk * (lse - to_f(x[k]));
  }
  l = warp_sum(l);
  if (lane == 0) {
    lse_out[row] = lse;
    row_loss[row] = l;
  }
}

// dlogits = (softmax * sum_k t_k - t) * dloss / rows.
template <typename T>
__global__ void __launch_bounds__(kXentWarps * 32)
    xent_bwd_kernel(int64_t rows, int64_t classes, const T* logits, const float* targets, const float* lse,
                    const float* dloss, T* dlogits) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kXentWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const T* x = logits + row * classes;
  const float* t = targets + row * classes;
  T* dx = dlogits + row * classes;
  float st = 0.0f;
  for (int64_t k = lane; k < classes; k += 32) st += t[k];
  st = warp_sum(st);
  const float l = lse[row], dl = dloss[0], rf = float(rows);
  for (int64_t k = lane; k < classes; k += 32) dx[k] = from_f<T>((expf(to_f(x[k]) - l) * st - t[k]) * dl / rf);
}

}  // namespace
}  // namespace vsw

using namespace vsw;

int vs_mse_fwd(int dtype, int64_t n, const void* pred, const float* target, float* loss, vs_stream stream) {
  static const char* fn = "vs_mse_fwd";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "n", n));
  if (n == 0) return vs_fail(VS_ERR_ARG, "%s: the mean over n = 0 values is undefined", fn);
  VSW_TRY(check_ptr(fn, "pred", pred));
  VSW_TRY(check_ptr(fn, "target", target));
  VSW_TRY(check_ptr(fn, "loss", loss));
  cudaStream_t s = as_stream(stream);
  float* scratch = nullptr;
  VSW_TRY(stream_scratch(fn, s, &scratch));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return reduce_to_scalar<T, true>(fn, n, static_cast<const T*>(pred), target, SquaredDiff{}, MeanOf{double(n)},
                                     scratch, loss, s);
  });
}

int vs_mse_bwd(int dtype, int64_t n, const void* pred, const float* target, const float* dloss, void* dpred,
               vs_stream stream) {
  static const char* fn = "vs_mse_bwd";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "n", n));
  if (n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "pred", pred));
  VSW_TRY(check_ptr(fn, "target", target));
  VSW_TRY(check_ptr(fn, "dloss", dloss));
  VSW_TRY(check_ptr(fn, "dpred", dpred));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_map2(fn, n, static_cast<const T*>(pred), target, static_cast<T*>(dpred), MseGrad{float(n), dloss},
                       as_stream(stream));
  });
}

int vs_softmax_xent_fwd(int dtype, int64_t rows, int64_t classes, const void* logits, const float* targets,
                        float* loss, float* lse, vs_stream stream) {
  static const char* fn = "vs_softmax_xent_fwd";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "rows", rows));
  VSW_TRY(check_size(fn, "classes", classes));
  if (rows == 0) return vs_fail(VS_ERR_ARG, "%s: the mean over rows = 0 is undefined", fn);
  if (classes == 0) return vs_fail(VS_ERR_ARG, "%s: classes = 0", fn);
  if (rows > int64_t(kScratchBytes / sizeof(float))) {
    return vs_fail(VS_ERR_ARG, "%s: rows = %lld exceeds the %lld the reduction scratch holds", fn, (long long)rows,
                   (long long)(kScratchBytes / sizeof(float)));
  }
  VSW_TRY(check_ptr(fn, "logits", logits));
  VSW_TRY(check_ptr(fn, "targets", targets));
  VSW_TRY(check_ptr(fn, "loss", loss));
  VSW_TRY(check_ptr(fn, "lse", lse));
  cudaStream_t s = as_stream(stream);
  float* row_loss = nullptr;
  VSW_TRY(stream_scratch(fn, s, &row_loss));
  const unsigned grid = unsigned((rows + kXentWarps - 1) / kXentWarps);
  if (dtype == VS_BF16) {
    xent_fwd_kernel<bf16><<<grid, kXentWarps * 32, 0, s>>>(rows, classes, static_cast<const bf16*>(logits), targets,
                                                           lse, row_loss);
  } else {
    xent_fwd_kernel<float><<<grid, kXentWarps * 32, 0, s>>>(rows, classes, static_cast<const float*>(logits), targets,
                                                            lse, row_loss);
  }
  VSW_TRY(vs_check_launch("vs_softmax_xent_fwd (xent_fwd_kernel)"));
  reduce_final_kernel<MeanOf><<<1, kReduceThreads, 0, s>>>(rows, row_loss, MeanOf{double(rows)}, loss);
  return vs_check_launch("vs_softmax_xent_fwd (reduce_final_kernel)");
}

int vs_softmax_xent_bwd(int dtype, int64_t rows, int64_t classes, const void* logits, const float* targets,
                        const float* lse, const float* dloss, void* dlogits, vs_stream stream) {
  static const char* fn = "vs_softmax_xent_bwd";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "rows", rows));
  VSW_TRY(check_size(fn, "classes", classes));
  if (rows == 0 || classes == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "logits", logits));
  VSW_TRY(check_ptr(fn, "targets", targets));
  VSW_TRY(check_ptr(fn, "lse", lse));
  VSW_TRY(check_ptr(fn, "dloss", dloss));
  VSW_TRY(check_ptr(fn, "dlogits", dlogits));
  cudaStream_t s = as_stream(stream);
  const int64_t blocks = (rows + kXentWarps - 1) / kXentWarps;
  if (blocks > 0x7fffffff) return vs_fail(VS_ERR_ARG, "%s: rows = %lld is too large", fn, (long long)rows);
  const unsigned grid = unsigned(blocks);
  if (dtype == VS_BF16) {
    xent_bwd_kernel<bf16><<<grid, kXentWarps * 32, 0, s>>>(rows, classes, static_cast<const bf16*>(logits), targets,
                                                           lse, dloss, static_cast<bf16*>(dlogits));
  } else {
    xent_bwd_kernel<float><<<grid, kXentWarps * 32, 0, s>>>(rows, classes, static_cast<const float*>(logits), targets,
                                                            lse, dloss, static_cast<float*>(dlogits));
  }
  return vs_check_launch("vs_softmax_xent_bwd (xent_bwd_kernel)");
}
