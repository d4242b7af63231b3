// A simulated cuBLASLt: exactly the API subset that cuda/gpu/gemm.cu opens with dlsym, written from
// NVIDIA's cuBLASLt documentation. Matrices are column-major with a leading dimension; D = alpha *
// op(A) op(B) + beta * C, accumulated in f32 (CUBLAS_COMPUTE_32F), then the epilogue: BIAS adds a
// vector along the rows of D, GELU_AUX(_BIAS) stores the pre-activation into aux and D = gelu(x) (the
// tanh approximation, as cuBLASLt's GELU), DGELU multiplies by gelu'(aux). Every operand's extent is
// checked against the live device allocations, as a GPU would fault on it.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include <cuda_bf16.h>

#include "../gpu/cublaslt_api.h"
#include "memory.h"

namespace {

using namespace vsw::lt;

struct Desc {
  int compute, scale;
  int32_t trans_a = kOpN, trans_b = kOpN;
  uint32_t epilogue = kEpilogueDefault;
  const void* bias = nullptr;
  void* aux = nullptr;
  int64_t aux_ld = 0;
  int32_t bias_type = -1;  // -1: the type of D
};

struct Layout {
  int type;
  uint64_t rows, cols;
  int64_t ld;
};

struct Pref {
  uint64_t max_ws = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D
};

thread_local char t_detail[1024] = "";

Status fail(Status s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
Status fail(Status s, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_detail, sizeof(t_detail), fmt, ap);
  va_end(ap);
  return s;
}

int type_bytes(int t) { return t == kR32F ? 4 : t == kR16BF ? 2 : 0; }

float load(const void* p, int type, size_t i) {
  if (type == kR32F) return static_cast<const float*>(p)[i];
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

void store(void* p, int type, size_t i, float v) {
  if (type == kR32F) static_cast<float*>(p)[i] = v;
  else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

// The tanh form of GELU and its derivative (cuBLASLt's GELU epilogues).
float gelu_tanh(float x) {
  const float k = 0.7978845608028654f, c = 0.044715f;
  return 0.5f * x * (1.0f + tanhf(k * (x + c * x * x * x)));
}
float gelu_tanh_grad(float x) {
  const float k = 0.7978845608028654f, c = 0.044715f;
  const float t = tanhf(k * (x + c * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x * x);
}

// The bytes a column-major (rows, cols, ld) matrix spans.
size_t span(const Layout& l) {
  if (l.rows == 0 || l.cols == 0) return 0;
  return (size_t(l.cols - 1) * size_t(l.ld) + l.rows) * size_t(type_bytes(l.type));
}

bool operand_ok(const char* what, const void* p, size_t bytes) {
  if (bytes == 0) return true;
  std::string why;
  if (vsim::device_range_ok(p, bytes, &why)) return true;
  fail(kStatusExecutionFailed, "cublasLtMatmul: operand %s: %s", what, why.c_str());
  return false;
}

}  // namespace

extern "C" {

Status cublasLtCreate(Handle* handle) {
  if (handle == nullptr) return fail(kStatusInvalidValue, "cublasLtCreate: handle is NULL");
  *handle = reinterpret_cast<Handle>(new int(1));
  return kStatusSuccess;
}

Status cublasLtDestroy(Handle handle) {
  delete reinterpret_cast<int*>(handle);
  return kStatusSuccess;
}

const char* cublasLtGetStatusString(Status s) {
  static const char* names[] = {"CUBLAS_STATUS_SUCCESS", "CUBLAS_STATUS_NOT_INITIALIZED"};
  if (s != kStatusSuccess && t_detail[0] != '\0') return t_detail;
  return s == kStatusSuccess ? names[0] : "CUBLAS_STATUS_ERROR";
}

Status cublasLtMatmulDescCreate(MatmulDesc* desc, int compute_type, int scale_type) {
  if (compute_type != kCompute32F || scale_type != kR32F) {
    return fail(kStatusNotSupported, "cublasLtMatmulDescCreate: compute type %d / scale type %d are not simulated",
                compute_type, scale_type);
  }
  Desc* d = new Desc();
  d->compute = compute_type;
  d->scale = scale_type;
  *desc = reinterpret_cast<MatmulDesc>(d);
  return kStatusSuccess;
}

Status cublasLtMatmulDescDestroy(MatmulDesc desc) {
  delete reinterpret_cast<Desc*>(desc);
  return kStatusSuccess;
}

Status cublasLtMatmulDescSetAttribute(MatmulDesc desc, int attr, const void* buf, size_t size) {
  Desc* d = reinterpret_cast<Desc*>(desc);
  auto take = [&](void* dst, size_t want) {
    if (size != want) return fail(kStatusInvalidValue, "cublasLtMatmulDescSetAttribute(%d): size %zu, expected %zu", attr, size, want);
    memcpy(dst, buf, want);
    return kStatusSuccess;
  };
  switch (attr) {
    case kDescTransA: return take(&d->trans_a, 4);
    case kDescTransB: return take(&d->trans_b, 4);
    case kDescEpilogue: return take(&d->epilogue, 4);
    case kDescBiasPointer: return take(&d->bias, sizeof(void*));
    case kDescEpilogueAuxPointer: return take(&d->aux, sizeof(void*));
    case kDescEpilogueAuxLd: return take(&d->aux_ld, 8);
    case kDescBiasDataType: return take(&d->bias_type, 4);
  }
  return fail(kStatusInvalidValue, "cublasLtMatmulDescSetAttribute: attribute %d is not simulated", attr);
}

Status cublasLtMatrixLayoutCreate(MatrixLayout* layout, int type, uint64_t rows, uint64_t cols, int64_t ld) {
  if (type_bytes(type) == 0) return fail(kStatusNotSupported, "cublasLtMatrixLayoutCreate: type %d is not simulated", type);
  if (ld < int64_t(rows) || ld < 1) {
    return fail(kStatusInvalidValue, "cublasLtMatrixLayoutCreate: ld %lld < rows %llu", (long long)ld,
                (unsigned long long)rows);
  }
  *layout = reinterpret_cast<MatrixLayout>(new Layout{type, rows, cols, ld});
  return kStatusSuccess;
}

Status cublasLtMatrixLayoutDestroy(MatrixLayout layout) {
  delete reinterpret_cast<Layout*>(layout);
  return kStatusSuccess;
}

Status cublasLtMatmulPreferenceCreate(MatmulPreference* pref) {
  *pref = reinterpret_cast<MatmulPreference>(new Pref());
  return kStatusSuccess;
}

Status cublasLtMatmulPreferenceDestroy(MatmulPreference pref) {
  delete reinterpret_cast<Pref*>(pref);
  return kStatusSuccess;
}

Status cublasLtMatmulPreferenceSetAttribute(MatmulPreference pref, int attr, const void* buf, size_t size) {
  Pref* p = reinterpret_cast<Pref*>(pref);
  if (attr == kPrefMaxWorkspaceBytes && size == 8) {
    memcpy(&p->max_ws, buf, 8);
    return kStatusSuccess;
  }
  if (attr >= kPrefMinAlignmentA && attr <= kPrefMinAlignmentD && size == 4) {
    memcpy(&p->align[attr - kPrefMinAlignmentA], buf, 4);
    return kStatusSuccess;
  }
  return fail(kStatusInvalidValue, "cublasLtMatmulPreferenceSetAttribute: attribute %d (size %zu) is not simulated",
              attr, size);
}

// The simulated library's algorithms need 4-byte alignment of every matrix (its rows and its base): a
// bf16 matrix with rows of an odd number of elements gets no algorithm, which real cuBLASLt can also
// answer, and the caller must take its own fallback.
Status cublasLtMatmulAlgoGetHeuristic(Handle handle, MatmulDesc desc, MatrixLayout a, MatrixLayout b, MatrixLayout c,
                                      MatrixLayout d, MatmulPreference pref, int requested,
                                      MatmulHeuristicResult results[], int* returned) {
  const Pref* p = reinterpret_cast<const Pref*>(pref);
  *returned = 0;
  if (requested < 1) return fail(kStatusInvalidValue, "cublasLtMatmulAlgoGetHeuristic: requested %d", requested);
  const Layout* ls[4] = {reinterpret_cast<const Layout*>(a), reinterpret_cast<const Layout*>(b),
                         reinterpret_cast<const Layout*>(c), reinterpret_cast<const Layout*>(d)};
  for (int i = 0; i < 4; ++i) {
    const uint64_t ld_bytes = uint64_t(ls[i]->ld) * uint64_t(type_bytes(ls[i]->type));
    if (p->align[i] < 4 || ld_bytes % 4 != 0) {
      return fail(kStatusNotSupported, "cublasLtMatmulAlgoGetHeuristic: no algorithm for matrix %c with %u-byte "
                  "alignment and %llu-byte columns", "ABCD"[i], p->align[i], (unsigned long long)ld_bytes);
    }
  }
  memset(&results[0], 0, sizeof(results[0]));
  results[0].algo.data[0] = 0x5153494dull;  // "MISQ": the one simulated algorithm
  results[0].workspaceSize = 0;
  results[0].state = kStatusSuccess;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return kStatusSuccess;
}

Status cublasLtMatmul(Handle handle, MatmulDesc desc, const void* alpha, const void* A, MatrixLayout a_layout,
                      const void* B, MatrixLayout b_layout, const void* beta, const void* C, MatrixLayout c_layout,
                      void* D, MatrixLayout d_layout, const MatmulAlgo* algo, void* workspace, size_t workspace_bytes,
                      cudaStream_t stream) {
  const Desc& ds = *reinterpret_cast<const Desc*>(desc);
  const Layout& la = *reinterpret_cast<const Layout*>(a_layout);
  const Layout& lb = *reinterpret_cast<const Layout*>(b_layout);
  const Layout& lc = *reinterpret_cast<const Layout*>(c_layout);
  const Layout& ld = *reinterpret_cast<const Layout*>(d_layout);
  if (algo == nullptr || algo->data[0] != 0x5153494dull) {
    return fail(kStatusInvalidValue, "cublasLtMatmul: the algorithm did not come from the heuristic");
  }
  const bool ta = ds.trans_a == kOpT, tb = ds.trans_b == kOpT;
  const uint64_t m = ld.rows, n = ld.cols;
  const uint64_t k = ta ? la.rows : la.cols;
  if ((ta ? la.cols : la.rows) != m || (tb ? lb.rows : lb.cols) != n || (tb ? lb.cols : lb.rows) != k ||
      lc.rows != m || lc.cols != n || la.type != lb.type) {
    return fail(kStatusInvalidValue,
                "cublasLtMatmul: shapes do not agree: A %llux%llu%s, B %llux%llu%s, C %llux%llu, D %llux%llu",
                (unsigned long long)la.rows, (unsigned long long)la.cols, ta ? " (T)" : "",
                (unsigned long long)lb.rows, (unsigned long long)lb.cols, tb ? " (T)" : "",
                (unsigned long long)lc.rows, (unsigned long long)lc.cols, (unsigned long long)m,
                (unsigned long long)n);
  }
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const uint32_t e = ds.epilogue;
  const bool bias = e == kEpilogueBias || e == kEpilogueGeluAuxBias;
  const bool gelu = e == kEpilogueGeluAux || e == kEpilogueGeluAuxBias;
  const bool dgelu = e == kEpilogueDGelu;
  if (e != kEpilogueDefault && !bias && !gelu && !dgelu) {
    return fail(kStatusNotSupported, "cublasLtMatmul: epilogue %u is not simulated", e);
  }
  const int bias_type = ds.bias_type < 0 ? ld.type : ds.bias_type;
  if (!operand_ok("A", A, span(la)) || !operand_ok("B", B, span(lb)) || (be != 0.0f && !operand_ok("C", C, span(lc))) ||
      !operand_ok("D", D, span(ld)) || (bias && !operand_ok("bias", ds.bias, m * size_t(type_bytes(bias_type))))) {
    return kStatusExecutionFailed;
  }
  if (gelu || dgelu) {
    if (ds.aux == nullptr || ds.aux_ld < int64_t(m)) {
      return fail(kStatusInvalidValue, "cublasLtMatmul: epilogue %u needs the aux pointer and an aux ld >= %llu", e,
                  (unsigned long long)m);
    }
    if (!operand_ok("aux", ds.aux, span(Layout{ld.type, m, n, ds.aux_ld}))) return kStatusExecutionFailed;
  }
  // op(A) as (m, k) and op(B) as (n, k), row-major f32, so that every output is a contiguous dot product.
  std::vector<float> opa(m * k), opb(n * k);
  for (uint64_t i = 0; i < m; ++i) {
    for (uint64_t p = 0; p < k; ++p) opa[i * k + p] = load(A, la.type, ta ? p + i * la.ld : i + p * la.ld);
  }
  for (uint64_t j = 0; j < n; ++j) {
    for (uint64_t p = 0; p < k; ++p) opb[j * k + p] = load(B, lb.type, tb ? j + p * lb.ld : p + j * lb.ld);
  }
  for (uint64_t j = 0; j < n; ++j) {
    for (uint64_t i = 0; i < m; ++i) {
      const float* x = &opa[i * k];
      const float* y = &opb[j * k];
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      uint64_t p = 0;
      for (; p + 8 <= k; p += 8) {
        for (int q = 0; q < 8; ++q) acc[q] += x[p + q] * y[p + q];
      }
      float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; p < k; ++p) s += x[p] * y[p];
      float v = al * s;
      if (be != 0.0f) v += be * load(C, lc.type, i + j * lc.ld);
      if (bias) v += load(ds.bias, bias_type, i);
      if (gelu) {
        store(ds.aux, ld.type, i + j * ds.aux_ld, v);
        v = gelu_tanh(v);
      }
      if (dgelu) v *= gelu_tanh_grad(load(ds.aux, ld.type, i + j * ds.aux_ld));
      store(D, ld.type, i + j * ld.ld, v);
    }
  }
  return kStatusSuccess;
}

}  // extern "C"
