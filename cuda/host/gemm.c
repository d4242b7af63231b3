/* GEMM through OpenBLAS sgemm. bf16 operands are widened to f32 first, and every epilogue is applied in
 * double to the f32 product so that the output is rounded once. */
#include <cblas.h>
#include <inttypes.h>

#include "host.h"

static const char* const K = "vs_gemm";

static const char* epilogue_name(int epilogue) {
  switch (epilogue) {
    case VS_EPI_NONE:
      return "NONE";
    case VS_EPI_BIAS:
      return "BIAS";
    case VS_EPI_GELU_BIAS:
      return "GELU_BIAS";
    case VS_EPI_DGELU:
      return "DGELU";
    default:
      return "unknown";
  }
}

static int check_args(int ab_dtype, int c_dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                      float alpha, const void* a, const void* b, float beta, const void* c, const void* bias,
                      int epilogue, const void* aux) {
  VS_TRY(vs_check_float(K, "ab_dtype", ab_dtype));
  VS_TRY(vs_check_float(K, "c_dtype", c_dtype));
  if (ab_dtype == VS_F32 && c_dtype == VS_BF16) {
    return vs_fail(VS_ERR_DTYPE, "%s: c_dtype 1 (bf16) needs ab_dtype 1 (bf16), got ab_dtype 0 (f32)", K);
  }
  VS_TRY(vs_check_flag(K, "trans_a", trans_a));
  VS_TRY(vs_check_flag(K, "trans_b", trans_b));
  VS_TRY(VS_DIMS(K, NULL, "m n k", m, n, k));
  /* sgemm takes blasint sizes and leading dimensions. */
  const int64_t blas_max = (int64_t)(((uint64_t)1 << (8 * sizeof(blasint) - 1)) - 1);
  if (m > blas_max || n > blas_max || k > blas_max) {
    return vs_fail(VS_ERR_ARG, "%s: m %" PRId64 ", n %" PRId64 ", k %" PRId64 " exceed the BLAS size limit %" PRId64,
                   K, m, n, k, blas_max);
  }
  if (epilogue < VS_EPI_NONE || epilogue > VS_EPI_DGELU) {
    return vs_fail(VS_ERR_ARG, "%s: epilogue must be 0..3 (NONE, BIAS, GELU_BIAS, DGELU), got %d", K, epilogue);
  }
  if ((epilogue == VS_EPI_GELU_BIAS || epilogue == VS_EPI_DGELU) && (alpha != 1.0f || beta != 0.0f)) {
    return vs_fail(VS_ERR_ARG, "%s: epilogue %d (%s) needs alpha 1 and beta 0, got alpha %g and beta %g", K,
                   epilogue, epilogue_name(epilogue), (double)alpha, (double)beta);
  }
  const int64_t mn = m * n;
  VS_TRY(vs_check_ptr(K, "a", a, m * k));
  VS_TRY(vs_check_ptr(K, "b", b, k * n));
  VS_TRY(vs_check_ptr(K, "c", c, mn));
  if (epilogue == VS_EPI_BIAS) {
    VS_TRY(vs_check_ptr(K, "bias", bias, mn > 0 ? n : 0));
  }
  if (epilogue == VS_EPI_GELU_BIAS || epilogue == VS_EPI_DGELU) {
    VS_TRY(vs_check_ptr(K, "aux", aux, mn));
  }
  return VS_OK;
}

/* out (m, n) f32 = alpha op(A) op(B) + beta out, with k == 0 done here: BLAS implementations differ on
 * whether they still scale C then, and beta 0 must clear NaN. */
static void sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  const float* b, float beta, float* out) {
  if (k == 0) {
    const int64_t mn = m * n;
#pragma omp parallel for schedule(static) num_threads(vs_team(mn))
    for (int64_t i = 0; i < mn; i++) {
      out[i] = beta == 0.0f ? 0.0f : beta * out[i];
    }
    return;
  }
  const blasint lda = (blasint)(trans_a ? m : k);
  const blasint ldb = (blasint)(trans_b ? k : n);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              (blasint)m, (blasint)n, (blasint)k, alpha, a, lda, b, ldb, beta, out, (blasint)n);
}

int vs_gemm(int ab_dtype, int c_dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
            float alpha, const void* a, const void* b, float beta, void* c, const void* bias, int epilogue,
            void* aux, vs_stream stream) {
  VS_TRY(check_args(ab_dtype, c_dtype, trans_a, trans_b, m, n, k, alpha, a, b, beta, c, bias, epilogue, aux));
  if (m == 0 || n == 0) {
    return VS_OK;
  }
  const float* a32 = a;
  const float* b32 = b;
  if (ab_dtype == VS_BF16) {
    const int64_t a_bytes = m * k * (int64_t)sizeof(float);
    const int64_t b_bytes = k * n * (int64_t)sizeof(float);
    float* wa = vs_scratch(VS_SCRATCH_CALLER0, a_bytes);
    if (wa == NULL) {
      return vs_fail_nomem(K, a_bytes);
    }
    float* wb = vs_scratch(VS_SCRATCH_CALLER1, b_bytes);
    if (wb == NULL) {
      return vs_fail_nomem(K, b_bytes);
    }
    vs_to_f32(VS_BF16, a, wa, m * k);
    vs_to_f32(VS_BF16, b, wb, k * n);
    a32 = wa;
    b32 = wb;
  }
  const int64_t mn = m * n;

  if (c_dtype == VS_F32 && (epilogue == VS_EPI_NONE || epilogue == VS_EPI_BIAS)) {
    float* c32 = c;
    if (beta == 0.0f) {
      /* beta 0 must discard NaN in the old C; not every BLAS kernel guarantees that, so clear it. */
      memset(c32, 0, (size_t)mn * sizeof(float));
    }
    sgemm(trans_a, trans_b, m, n, k, alpha, a32, b32, beta, c32);
    if (epilogue == VS_EPI_BIAS) {
      const float* bias32 = bias;
#pragma omp parallel for schedule(static) num_threads(vs_team(mn))
      for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < n; j++) {
          c32[r * n + j] += bias32[j];
        }
      }
    }
    return VS_OK;
  }

  /* Everything else: the f32 product alpha AB goes to scratch and one pass forms the output. */
  const int64_t p_bytes = mn * (int64_t)sizeof(float);
  float* p = vs_scratch(VS_SCRATCH_CALLER2, p_bytes);
  if (p == NULL) {
    return vs_fail_nomem(K, p_bytes);
  }
  sgemm(trans_a, trans_b, m, n, k, alpha, a32, b32, 0.0f, p);
  const int cd = c_dtype;
  const int work_scale = epilogue == VS_EPI_GELU_BIAS || epilogue == VS_EPI_DGELU ? 16 : 1;
  if (cd == VS_F32 && epilogue == VS_EPI_GELU_BIAS) {
    /* The GELU epilogues spelled out for f32, so that the loops vectorise. */
    const float* bias32 = bias;
    float* c32 = c;
    float* aux32 = aux;
#pragma omp parallel for schedule(static) num_threads(vs_team(work_scale * mn))
    for (int64_t r = 0; r < m; r++) {
      for (int64_t j = 0; j < n; j++) {
        const double v = (double)p[r * n + j] + bias32[j];
        aux32[r * n + j] = (float)v;
        c32[r * n + j] = (float)vs_gelu(v);
      }
    }
    return VS_OK;
  }
  if (cd == VS_F32 && epilogue == VS_EPI_DGELU) {
    const float* aux32 = aux;
    float* c32 = c;
#pragma omp parallel for schedule(static) num_threads(vs_team(work_scale * mn))
    for (int64_t i = 0; i < mn; i++) {
      c32[i] = (float)((double)p[i] * vs_gelu_grad(aux32[i]));
    }
    return VS_OK;
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(work_scale * mn))
  for (int64_t r = 0; r < m; r++) {
    for (int64_t j = 0; j < n; j++) {
      const int64_t i = r * n + j;
      double v = p[i];
      switch (epilogue) {
        case VS_EPI_NONE:
        case VS_EPI_BIAS:
          if (beta != 0.0f) {
            v += (double)beta * vs_load(cd, c, i);
          }
          if (epilogue == VS_EPI_BIAS) {
            v += vs_load(cd, bias, j);
          }
          vs_store_d(cd, c, i, v);
          break;
        case VS_EPI_GELU_BIAS:
          /* gelu of the pre-activation as stored in aux (rounded), which the backward differentiates
           * (vswift.h); a NULL bias adds nothing. */
          if (bias != NULL) {
            v += vs_load(cd, bias, j);
          }
          vs_store_d(cd, aux, i, v);
          vs_store_d(cd, c, i, vs_gelu(vs_load(cd, aux, i)));
          break;
        default:
          /* The product rounded to c_dtype first, as C holds it in an unfused GEMM (vswift.h). */
          vs_store_d(cd, c, i, v);
          vs_store_d(cd, c, i, vs_load(cd, c, i) * vs_gelu_grad(vs_load(cd, aux, i)));
          break;
      }
    }
  }
  return VS_OK;
}
