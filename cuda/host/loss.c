/* Losses. The scalar results are sums in double formed per fixed block and added in block order, so
 * they do not depend on the thread count. */
#include <inttypes.h>

#include "host.h"

int vs_mse_fwd(int dtype, int64_t n, const void* pred, const float* target, float* loss, vs_stream stream) {
  static const char* k = "vs_mse_fwd";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  if (n == 0) {
    return vs_fail(VS_ERR_ARG, "%s: n must be >= 1 to take a mean, got 0", k);
  }
  VS_TRY(vs_check_ptr(k, "pred", pred, n));
  VS_TRY(vs_check_ptr(k, "target", target, n));
  VS_TRY(vs_check_ptr(k, "loss", loss, 1));
  const int64_t blocks = (n + VS_REDUCE_BLOCK - 1) / VS_REDUCE_BLOCK;
  const int64_t bytes = blocks * (int64_t)sizeof(double);
  double* partial = vs_scratch(VS_SCRATCH_CALLER0, bytes);
  if (partial == NULL) {
    return vs_fail_nomem(k, bytes);
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
  for (int64_t blk = 0; blk < blocks; blk++) {
    const int64_t i1 = (blk + 1) * VS_REDUCE_BLOCK < n ? (blk + 1) * VS_REDUCE_BLOCK : n;
    double s = 0.0;
    for (int64_t i = blk * VS_REDUCE_BLOCK; i < i1; i++) {
      const double d = (double)vs_load(dtype, pred, i) - (double)target[i];
      s += d * d;
    }
    partial[blk] = s;
  }
  double total = 0.0;
  for (int64_t blk = 0; blk < blocks; blk++) {
    total += partial[blk];
  }
  loss[0] = (float)(total / (double)n);
  return VS_OK;
}

int vs_mse_bwd(int dtype, int64_t n, const void* pred, const float* target, const float* dloss,
               void* dpred, vs_stream stream) {
  static const char* k = "vs_mse_bwd";
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, NULL, "n", n));
  VS_TRY(vs_check_ptr(k, "pred", pred, n));
  VS_TRY(vs_check_ptr(k, "target", target, n));
  VS_TRY(vs_check_ptr(k, "dloss", dloss, 1));
  VS_TRY(vs_check_ptr(k, "dpred", dpred, n));
  if (n == 0) {
    return VS_OK;
  }
  const double f = 2.0 * (double)dloss[0] / (double)n;
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
  for (int64_t i = 0; i < n; i++) {
    vs_store_d(dtype, dpred, i, ((double)vs_load(dtype, pred, i) - (double)target[i]) * f);
  }
  return VS_OK;
}

static int check_xent(const char* k, int dtype, int64_t rows, int64_t classes, int64_t* total) {
  VS_TRY(vs_check_float(k, "dtype", dtype));
  VS_TRY(VS_DIMS(k, total, "rows classes", rows, classes));
  if (rows < 1 || classes < 1) {
    return vs_fail(VS_ERR_ARG, "%s: rows and classes must be >= 1, got rows %" PRId64 " and classes %" PRId64, k,
                   rows, classes);
  }
  return VS_OK;
}

int vs_softmax_xent_fwd(int dtype, int64_t rows, int64_t classes, const void* logits, const float* targets,
                        float* loss, float* lse, vs_stream stream) {
  static const char* k = "vs_softmax_xent_fwd";
  int64_t total = 0;
  VS_TRY(check_xent(k, dtype, rows, classes, &total));
  VS_TRY(vs_check_ptr(k, "logits", logits, total));
  VS_TRY(vs_check_ptr(k, "targets", targets, total));
  VS_TRY(vs_check_ptr(k, "loss", loss, 1));
  VS_TRY(vs_check_ptr(k, "lse", lse, rows));
  const int64_t bytes = rows * (int64_t)sizeof(double);
  double* row_loss = vs_scratch(VS_SCRATCH_CALLER0, bytes);
  if (row_loss == NULL) {
    return vs_fail_nomem(k, bytes);
  }
#pragma omp parallel for schedule(static) num_threads(vs_team(4 * total))
  for (int64_t r = 0; r < rows; r++) {
    const int64_t base = r * classes;
    double mx = -INFINITY;
    for (int64_t j = 0; j < classes; j++) {
      const double x = vs_load(dtype, logits, base + j);
      mx = x > mx ? x : mx;
    }
    double s = 0.0;
    for (int64_t j = 0; j < classes; j++) {
      s += exp((double)vs_load(dtype, logits, base + j) - mx);
    }
    const double l = mx + log(s);
    double acc = 0.0;
    for (int64_t j = 0; j < classes; j++) {
      /* Zero targets are skipped so that a -inf logit with no weight does not give 0 * inf = NaN. */
      const double tj = targets[base + j];
      if (tj != 0.0) {
        acc -= tj * ((double)vs_load(dtype, logits, base + j) - l);
      }
    }
    lse[r] = (float)l;
    row_loss[r] = acc;
  }
  double sum = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    sum += row_loss[r];
  }
  loss[0] = (float)(sum / (double)rows);
  return VS_OK;
}

int vs_softmax_xent_bwd(int dtype, int64_t rows, int64_t classes, const void* logits, const float* targets,
                        const float* lse, const float* dloss, void* dlogits, vs_stream stream) {
  static const char* k = "vs_softmax_xent_bwd";
  int64_t total = 0;
  VS_TRY(check_xent(k, dtype, rows, classes, &total));
  VS_TRY(vs_check_ptr(k, "logits", logits, total));
  VS_TRY(vs_check_ptr(k, "targets", targets, total));
  VS_TRY(vs_check_ptr(k, "lse", lse, rows));
  VS_TRY(vs_check_ptr(k, "dloss", dloss, 1));
  VS_TRY(vs_check_ptr(k, "dlogits", dlogits, total));
  const double f = (double)dloss[0] / (double)rows;
#pragma omp parallel for schedule(static) num_threads(vs_team(4 * total))
  for (int64_t r = 0; r < rows; r++) {
    const int64_t base = r * classes;
    /* Soft targets need not sum to 1 (label smoothing, mixup), hence the row sum. */
    double tsum = 0.0;
    for (int64_t j = 0; j < classes; j++) {
      tsum += targets[base + j];
    }
    const double l = lse[r];
    for (int64_t j = 0; j < classes; j++) {
      const double p = exp((double)vs_load(dtype, logits, base + j) - l);
      vs_store_d(dtype, dlogits, base + j, (p * tsum - (double)targets[base + j]) * f);
    }
  }
  return VS_OK;
}
