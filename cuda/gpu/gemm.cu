// GEMM through cuBLASLt, opened at run time.
//
// The ABI is row-major; cuBLASLt is column-major. A row-major (r, c) matrix is the same memory as a
// column-major (c, r) one, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: cuBLASLt's first
// operand is our B, its second our A, and its (n, m) output with leading dimension n is our row-major C.
// The bias vector then runs along cuBLASLt's rows, which are our columns, as the ABI wants.
//
// Alignment: cuBLASLt algorithms need their minimum alignment on the base pointer and on the leading
// dimension of every matrix alike (CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_*_BYTES). The heuristic is told the real
// alignment of each matrix, min(pointer, row length in bytes): that excludes only algorithms the matrix
// could not meet anyway, so 16-byte aligned shapes keep their tensor-core kernels, and rows of other byte
// lengths (ViT-g/14's decoder MLP width 2234 in bf16 is 4468 bytes, SSv2's 174 classes are 348) get one
// that supports them. Where cuBLASLt has no algorithm at all, a SIMT kernel of our own (f32 accumulation)
// computes the product; VSWIFT_GEMM_FALLBACK=1 forces it, so that the self-test can cover that kernel too.
//
// GELU: cuBLASLt's GELU epilogues evaluate the tanh approximation of GELU (PyTorch's fused
// _addmm_activation notes the same), while the ABI, the host reference and torch.nn.GELU() use the exact
// erf form; they differ by up to about 5e-4. By default VS_EPI_GELU_BIAS therefore runs the GEMM with the
// bias epilogue into `aux` and computes C = gelu(aux) exactly in a second pass, on aux as stored, and
// VS_EPI_DGELU runs a plain GEMM into C followed by C *= gelu'(aux): the contract of vswift.h, which the
// host build computes the same way. Setting VSWIFT_CUBLASLT_GELU=1 uses cuBLASLt's fused GELU_AUX_BIAS /
// DGELU epilogues instead (one pass, tanh approximation, outside that contract).
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <vector>

#include <library_types.h>

#include "common.cuh"
#include "cublaslt_api.h"
#include "dynlib.h"

// Our copies of cudaDataType_t values against the runtime's own header, in every build.
static_assert(vsw::lt::kR32F == int(CUDA_R_32F), "CUDA_R_32F");
static_assert(vsw::lt::kR16BF == int(CUDA_R_16BF), "CUDA_R_16BF");
static_assert(sizeof(vsw::lt::MatmulHeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");

namespace vsw {
namespace {

// ------------------------------------------------------------------------------------------------
// Loading libcublasLt
// ------------------------------------------------------------------------------------------------

struct LtApi {
  bool ok = false;
  char error[1900] = "";
  char path[512] = "";
  lt::CreateFn create = nullptr;
  lt::GetStatusStringFn status_string = nullptr;  // optional
  lt::MatmulDescCreateFn desc_create = nullptr;
  lt::MatmulDescDestroyFn desc_destroy = nullptr;
  lt::MatmulDescSetAttributeFn desc_set = nullptr;
  lt::MatrixLayoutCreateFn layout_create = nullptr;
  lt::MatrixLayoutDestroyFn layout_destroy = nullptr;
  lt::MatmulPreferenceCreateFn pref_create = nullptr;
  lt::MatmulPreferenceDestroyFn pref_destroy = nullptr;
  lt::MatmulPreferenceSetAttributeFn pref_set = nullptr;
  lt::MatmulAlgoGetHeuristicFn heuristic = nullptr;
  lt::MatmulFn matmul = nullptr;
};

LtApi g_lt;
std::once_flag g_lt_once;

template <typename F>
bool resolve(void* lib, const char* name, F* out, LtApi& api) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  if (*out == nullptr) {
    snprintf(api.error, sizeof(api.error), "%s does not export %s", api.path, name);
    return false;
  }
  return true;
}

void load_lt() {
  static const char* const sonames[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};
  const LibrarySpec spec{"cuBLASLt", "VSWIFT_CUBLASLT", sonames, 3, "cublasLtMatmul"};
  void* lib = nullptr;
  if (!open_library(spec, &lib, g_lt.path, sizeof(g_lt.path), g_lt.error, sizeof(g_lt.error))) return;
  LtApi& a = g_lt;
  bool ok = resolve(lib, "cublasLtCreate", &a.create, a) &&
            resolve(lib, "cublasLtMatmulDescCreate", &a.desc_create, a) &&
            resolve(lib, "cublasLtMatmulDescDestroy", &a.desc_destroy, a) &&
            resolve(lib, "cublasLtMatmulDescSetAttribute", &a.desc_set, a) &&
            resolve(lib, "cublasLtMatrixLayoutCreate", &a.layout_create, a) &&
            resolve(lib, "cublasLtMatrixLayoutDestroy", &a.layout_destroy, a) &&
            resolve(lib, "cublasLtMatmulPreferenceCreate", &a.pref_create, a) &&
            resolve(lib, "cublasLtMatmulPreferenceDestroy", &a.pref_destroy, a) &&
            resolve(lib, "cublasLtMatmulPreferenceSetAttribute", &a.pref_set, a) &&
            resolve(lib, "cublasLtMatmulAlgoGetHeuristic", &a.heuristic, a) &&
            resolve(lib, "cublasLtMatmul", &a.matmul, a);
  a.status_string = reinterpret_cast<lt::GetStatusStringFn>(dlsym(lib, "cublasLtGetStatusString"));
  // The library stays loaded for the life of the process, like a linked one.
  a.ok = ok;
}

int lt_api(const char* fn, const LtApi** api) {
  std::call_once(g_lt_once, load_lt);
  if (!g_lt.ok) return vs_fail(VS_ERR_LIBRARY, "%s: %s", fn, g_lt.error);
  *api = &g_lt;
  return VS_OK;
}

const char* status_text(lt::Status s) {
  if (g_lt.status_string != nullptr) {
    const char* t = g_lt.status_string(s);
    if (t != nullptr) return t;
  }
  switch (s) {
    case lt::kStatusNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case lt::kStatusAllocFailed: return "CUBLAS_STATUS_ALLOC_FAILED";
    case lt::kStatusInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
    case lt::kStatusArchMismatch: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case lt::kStatusMappingError: return "CUBLAS_STATUS_MAPPING_ERROR";
    case lt::kStatusExecutionFailed: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case lt::kStatusInternalError: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case lt::kStatusNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "unknown cuBLAS status";
  }
}

// ------------------------------------------------------------------------------------------------
// Plans: descriptors, layouts and the heuristic's algorithm, cached per problem
// ------------------------------------------------------------------------------------------------

struct PlanKey {
  int32_t m, n, k;
  int32_t ab_type, c_type;  // cudaDataType values
  int32_t trans_a, trans_b;
  uint32_t epilogue;        // cuBLASLt epilogue
  // Alignment (bytes, capped at 256) of every pointer the heuristic looks at: an algorithm chosen for
  // 256-byte aligned buffers may not run on 16-byte aligned ones.
  uint16_t al_a, al_b, al_c, al_bias, al_aux;

  bool operator==(const PlanKey& o) const {
    return m == o.m && n == o.n && k == o.k && ab_type == o.ab_type && c_type == o.c_type && trans_a == o.trans_a &&
           trans_b == o.trans_b && epilogue == o.epilogue && al_a == o.al_a && al_b == o.al_b && al_c == o.al_c &&
           al_bias == o.al_bias && al_aux == o.al_aux;
  }

  uint64_t hash() const {
    const uint64_t fields[] = {uint64_t(uint32_t(m)),     uint64_t(uint32_t(n)),       uint64_t(uint32_t(k)),
                               uint64_t(uint32_t(ab_type)), uint64_t(uint32_t(c_type)), uint64_t(uint32_t(trans_a)),
                               uint64_t(uint32_t(trans_b)), uint64_t(epilogue),         uint64_t(al_a),
                               uint64_t(al_b),              uint64_t(al_c),             uint64_t(al_bias),
                               uint64_t(al_aux)};
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
    for (uint64_t f : fields) {
      for (int i = 0; i < 8; ++i) {
        h ^= (f >> (8 * i)) & 0xffu;
        h *= 1099511628211ull;
      }
    }
    return h;
  }
};

struct Plan {
  bool used = false;
  PlanKey key{};
  lt::MatmulDesc desc = nullptr;
  lt::MatrixLayout la = nullptr, lb = nullptr, lc = nullptr;
  bool has_algo = false;  // false: the heuristic found none (cached too, so the fallback is cheap)
  lt::MatmulAlgo algo{};
};

constexpr int kPlanSlots = 512;     // a training run has a few dozen distinct GEMMs
constexpr int kPlanMaxUsed = 384;   // past this the table is flushed rather than probed forever
constexpr int kMaxDevices = 64;

struct DeviceLt {
  std::mutex mu;  // guards the handle, the plan table and the pointer attributes set before a launch
  lt::Handle handle = nullptr;
  std::vector<Plan> plans;
  int used = 0;
};

DeviceLt g_devices[kMaxDevices];

void destroy_plan(const LtApi& api, Plan& p) {
  if (p.la) api.layout_destroy(p.la);
  if (p.lb) api.layout_destroy(p.lb);
  if (p.lc) api.layout_destroy(p.lc);
  if (p.desc) api.desc_destroy(p.desc);
  p = Plan{};
}

uint16_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return 256;
  const uintptr_t low = a & (~a + 1);
  return low >= 256 ? uint16_t(256) : uint16_t(low);
}

// Alignment of every row start of a matrix: row r begins at p + r * row_bytes.
uint16_t matrix_alignment(const void* p, int64_t row_bytes) {
  uint16_t al = alignment_of(p);
  const uint64_t r = uint64_t(row_bytes);
  if (r != 0) {
    const uint64_t low = r & (~r + 1);
    if (low < al) al = uint16_t(low);
  }
  return al;
}

int lt_check(const char* fn, const char* what, lt::Status s) {
  if (s == lt::kStatusSuccess) return VS_OK;
  return vs_fail(VS_ERR_BLAS, "%s: %s failed: %s (%d)", fn, what, status_text(s), s);
}

struct Problem {
  PlanKey key;
  const void* a;  // our A: cuBLASLt's B operand
  const void* b;  // our B: cuBLASLt's A operand
  void* d;        // output (C, or aux on the exact GELU path)
  const void* bias;
  void* aux;
  float alpha, beta;
};

bool epilogue_has_bias(uint32_t e) { return e == lt::kEpilogueBias || e == lt::kEpilogueGeluAuxBias; }
bool epilogue_has_aux(uint32_t e) {
  return e == lt::kEpilogueGeluAux || e == lt::kEpilogueGeluAuxBias || e == lt::kEpilogueDGelu;
}

int set_pointers(const char* fn, const LtApi& api, Plan& p, const Problem& pr) {
  if (epilogue_has_bias(pr.key.epilogue)) {
    VSW_TRY(lt_check(fn, "cublasLtMatmulDescSetAttribute(BIAS_POINTER)",
                     api.desc_set(p.desc, lt::kDescBiasPointer, &pr.bias, sizeof(pr.bias))));
  }
  if (epilogue_has_aux(pr.key.epilogue)) {
    VSW_TRY(lt_check(fn, "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_POINTER)",
                     api.desc_set(p.desc, lt::kDescEpilogueAuxPointer, &pr.aux, sizeof(pr.aux))));
  }
  return VS_OK;
}

int build_plan(const char* fn, const LtApi& api, lt::Handle handle, const Problem& pr, Plan& p) {
  const PlanKey& k = pr.key;
  p.key = k;
  p.used = true;
  VSW_TRY(lt_check(fn, "cublasLtMatmulDescCreate", api.desc_create(&p.desc, lt::kCompute32F, lt::kR32F)));
  // cuBLASLt operand 1 is our B, operand 2 our A (see the top of the file).
  const int32_t op_first = k.trans_b ? lt::kOpT : lt::kOpN;
  const int32_t op_second = k.trans_a ? lt::kOpT : lt::kOpN;
  VSW_TRY(lt_check(fn, "cublasLtMatmulDescSetAttribute(TRANSA)",
                   api.desc_set(p.desc, lt::kDescTransA, &op_first, sizeof(op_first))));
  VSW_TRY(lt_check(fn, "cublasLtMatmulDescSetAttribute(TRANSB)",
                   api.desc_set(p.desc, lt::kDescTransB, &op_second, sizeof(op_second))));
  const uint32_t epi = k.epilogue;
  VSW_TRY(lt_check(fn, "cublasLtMatmulDescSetAttribute(EPILOGUE)",
                   api.desc_set(p.desc, lt::kDescEpilogue, &epi, sizeof(epi))));
  if (epilogue_has_bias(epi)) {
    const int32_t bias_type = k.c_type;
    VSW_TRY(lt_check(fn, "cublasLtMatmulDescSetAttribute(BIAS_DATA_TYPE)",
                     api.desc_set(p.desc, lt::kDescBiasDataType, &bias_type, sizeof(bias_type))));
  }
  if (epilogue_has_aux(epi)) {
    const int64_t aux_ld = k.n;
    VSW_TRY(lt_check(fn, "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_LD)",
                     api.desc_set(p.desc, lt::kDescEpilogueAuxLd, &aux_ld, sizeof(aux_ld))));
  }
  const uint64_t m = uint64_t(k.m), n = uint64_t(k.n), kk = uint64_t(k.k);
  // Our B: stored (k, n), or (n, k) when transposed; column-major that is (n, k) ld n, or (k, n) ld k.
  VSW_TRY(lt_check(fn, "cublasLtMatrixLayoutCreate(A)",
                   api.layout_create(&p.la, k.ab_type, k.trans_b ? kk : n, k.trans_b ? n : kk,
                                     int64_t(k.trans_b ? kk : n))));
  // Our A: stored (m, k), or (k, m) when transposed; column-major (k, m) ld k, or (m, k) ld m.
  VSW_TRY(lt_check(fn, "cublasLtMatrixLayoutCreate(B)",
                   api.layout_create(&p.lb, k.ab_type, k.trans_a ? m : kk, k.trans_a ? kk : m,
                                     int64_t(k.trans_a ? m : kk))));
  VSW_TRY(lt_check(fn, "cublasLtMatrixLayoutCreate(C)", api.layout_create(&p.lc, k.c_type, n, m, int64_t(n))));

  lt::MatmulPreference pref = nullptr;
  VSW_TRY(lt_check(fn, "cublasLtMatmulPreferenceCreate", api.pref_create(&pref)));
  const uint64_t ws = kGemmWorkspaceBytes;
  const uint32_t al_first = k.al_b, al_second = k.al_a, al_c = k.al_c;
  lt::Status s = api.pref_set(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof(ws));
  if (s == lt::kStatusSuccess) s = api.pref_set(pref, lt::kPrefMinAlignmentA, &al_first, sizeof(al_first));
  if (s == lt::kStatusSuccess) s = api.pref_set(pref, lt::kPrefMinAlignmentB, &al_second, sizeof(al_second));
  if (s == lt::kStatusSuccess) s = api.pref_set(pref, lt::kPrefMinAlignmentC, &al_c, sizeof(al_c));
  if (s == lt::kStatusSuccess) s = api.pref_set(pref, lt::kPrefMinAlignmentD, &al_c, sizeof(al_c));
  int st = lt_check(fn, "cublasLtMatmulPreferenceSetAttribute", s);
  if (st == VS_OK) st = set_pointers(fn, api, p, pr);
  if (st == VS_OK) {
    lt::MatmulHeuristicResult result;
    memset(&result, 0, sizeof(result));
    int returned = 0;
    s = api.heuristic(handle, p.desc, p.la, p.lb, p.lc, p.lc, pref, 1, &result, &returned);
    // NOT_SUPPORTED means "no algorithm for this configuration": a cached answer, not an error.
    if (s == lt::kStatusSuccess && returned > 0 && result.state == lt::kStatusSuccess) {
      p.has_algo = true;
      p.algo = result.algo;
    } else if (s != lt::kStatusSuccess && s != lt::kStatusNotSupported) {
      st = lt_check(fn, "cublasLtMatmulAlgoGetHeuristic", s);
    }
  }
  api.pref_destroy(pref);
  return st;
}

// Finds or builds the plan for `pr` and enqueues the matmul. *no_algo is set (and nothing enqueued) when
// cuBLASLt has no algorithm for the configuration, so that the caller can take a fallback.
int run_matmul(const char* fn, const Problem& pr, cudaStream_t stream, bool* no_algo) {
  *no_algo = false;
  const LtApi* api = nullptr;
  VSW_TRY(lt_api(fn, &api));
  int dev = 0;
  VSW_TRY(current_device(fn, &dev));
  if (dev < 0 || dev >= kMaxDevices) return vs_fail(VS_ERR_ARG, "%s: device %d is beyond %d", fn, dev, kMaxDevices);
  void* ws = nullptr;
  size_t ws_bytes = 0;
  VSW_TRY(stream_gemm_workspace(fn, stream, &ws, &ws_bytes));

  DeviceLt& d = g_devices[dev];
  std::lock_guard<std::mutex> lock(d.mu);
  if (d.handle == nullptr) VSW_TRY(lt_check(fn, "cublasLtCreate", api->create(&d.handle)));
  if (d.plans.empty()) d.plans.resize(kPlanSlots);

  const uint64_t h = pr.key.hash();
  Plan* plan = nullptr;
  size_t slot = size_t(h % kPlanSlots);
  for (int probe = 0; probe < kPlanSlots; ++probe, slot = (slot + 1) % kPlanSlots) {
    Plan& p = d.plans[slot];
    if (!p.used) break;
    if (p.key == pr.key) {
      plan = &p;
      break;
    }
  }
  if (plan == nullptr) {
    if (d.used >= kPlanMaxUsed) {
      for (Plan& p : d.plans) destroy_plan(*api, p);
      d.used = 0;
      slot = size_t(h % kPlanSlots);
    }
    plan = &d.plans[slot];
    d.used += 1;
    const int st = build_plan(fn, *api, d.handle, pr, *plan);
    if (st != VS_OK) {
      destroy_plan(*api, *plan);
      d.used -= 1;
      return st;
    }
  } else {
    VSW_TRY(set_pointers(fn, *api, *plan, pr));
  }
  if (!plan->has_algo) {
    *no_algo = true;
    return VS_OK;
  }
  const float alpha = pr.alpha, beta = pr.beta;
  const lt::Status st = api->matmul(d.handle, plan->desc, &alpha, pr.b, plan->la, pr.a, plan->lb, &beta, pr.d, plan->lc,
                                    pr.d, plan->lc, &plan->algo, ws, ws_bytes, stream);
  if (st == lt::kStatusNotSupported) {
    // Refused before anything was launched: remembered like a heuristic that found nothing.
    plan->has_algo = false;
    *no_algo = true;
    return VS_OK;
  }
  return lt_check(fn, "cublasLtMatmul", st);
}

// ------------------------------------------------------------------------------------------------
// k == 0: the product is empty, only the beta term, the bias and the activation remain
// ------------------------------------------------------------------------------------------------

template <typename T>
__global__ void gemm_k0_kernel(int64_t m, int64_t n, float beta, const T* bias, T* c, T* aux, int epilogue) {
  const int64_t total = m * n;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t col = e % n;
    float v = 0.0f;
    if (epilogue == VS_EPI_NONE || epilogue == VS_EPI_BIAS) {
      if (beta != 0.0f) v = beta * to_f(c[e]);
      if (epilogue == VS_EPI_BIAS) v += to_f(bias[col]);
    } else if (epilogue == VS_EPI_GELU_BIAS) {
      const T pre = from_f<T>(bias ? to_f(bias[col]) : 0.0f);
      aux[e] = pre;
      v = gelu_exact(to_f(pre));
    } else {
      v = 0.0f * gelu_exact_grad(to_f(aux[e]));
    }
    c[e] = from_f<T>(v);
  }
}

// ------------------------------------------------------------------------------------------------
// SIMT fallback: C = alpha op(A) op(B) + beta C (beta 0 never reads C) for what cuBLASLt cannot run. One
// 64 x 64 tile of C per block and step, k in steps of 16 through shared memory, f32 accumulation; any
// element-aligned pointer and row length. Thread (tx, ty) owns rows ty + 16 r and columns tx + 16 s, so
// that its shared-memory reads broadcast or fall in distinct banks and its stores coalesce.
// ------------------------------------------------------------------------------------------------
constexpr int kFbTile = 64;
constexpr int kFbK = 16;
constexpr int kFbThreads = 256;

template <typename TAB, typename TC>
__global__ void __launch_bounds__(kFbThreads)
    gemm_fallback_kernel(int64_t m, int64_t n, int64_t k, float alpha, const TAB* a, int trans_a, const TAB* b,
                         int trans_b, float beta, TC* c, const TC* bias) {
  __shared__ float sa[kFbK][kFbTile + 1];  // sa[kk][i] = op(A)[row0 + i, k0 + kk]
  __shared__ float sb[kFbK][kFbTile + 1];  // sb[kk][j] = op(B)[k0 + kk, col0 + j]
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int64_t tiles_n = (n + kFbTile - 1) / kFbTile;
  const int64_t tiles = (m + kFbTile - 1) / kFbTile * tiles_n;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t row0 = tile / tiles_n * kFbTile, col0 = tile % tiles_n * kFbTile;
    float acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[r][q] = 0.0f;
    }
    for (int64_t k0 = 0; k0 < k; k0 += kFbK) {
      // Consecutive threads walk each operand's contiguous dimension, so the loads coalesce.
      for (int e = tid; e < kFbK * kFbTile; e += kFbThreads) {
        const int ka = trans_a ? e / kFbTile : e % kFbK;
        const int i = trans_a ? e % kFbTile : e / kFbK;
        const int64_t ar = row0 + i, ak = k0 + ka;
        sa[ka][i] = ar < m && ak < k ? to_f(trans_a ? a[ak * m + ar] : a[ar * k + ak]) : 0.0f;
        const int kb = trans_b ? e % kFbK : e / kFbTile;
        const int j = trans_b ? e / kFbK : e % kFbTile;
        const int64_t bc = col0 + j, bk = k0 + kb;
        sb[kb][j] = bc < n && bk < k ? to_f(trans_b ? b[bc * k + bk] : b[bk * n + bc]) : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kFbK; ++kk) {
        float ra[4], rb[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          ra[r] = sa[kk][ty + 16 * r];
          rb[r] = sb[kk][tx + 16 * r];
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
#pragma unroll
          for (int q = 0; q < 4; ++q) acc[r][q] = fmaf(ra[r], rb[q], acc[r][q]);
        }
      }
      __syncthreads();  // the tiles are overwritten by the next k step
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t row = row0 + ty + 16 * r;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t col = col0 + tx + 16 * q;
        if (row < m && col < n) {
          TC* p = c + row * n + col;
          float v = alpha * acc[r][q];
          if (beta != 0.0f) v += beta * to_f(*p);
          if (bias != nullptr) v += to_f(bias[col]);  // before the one rounding (vswift.h)
          *p = from_f<TC>(v);
        }
      }
    }
  }
}

// bias: (n) in c_dtype added before the rounding, or NULL.
int launch_gemm_fallback(int ab_dtype, int c_dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const void* a, const void* b, float beta, void* c, const void* bias,
                         cudaStream_t s) {
  const int64_t tiles = (m + kFbTile - 1) / kFbTile * ((n + kFbTile - 1) / kFbTile);
  const unsigned grid = grid_for(tiles, 1, 8);
  if (ab_dtype == VS_F32) {
    gemm_fallback_kernel<float, float><<<grid, kFbThreads, 0, s>>>(
        m, n, k, alpha, static_cast<const float*>(a), trans_a, static_cast<const float*>(b), trans_b, beta,
        static_cast<float*>(c), static_cast<const float*>(bias));
  } else if (c_dtype == VS_F32) {
    gemm_fallback_kernel<bf16, float><<<grid, kFbThreads, 0, s>>>(
        m, n, k, alpha, static_cast<const bf16*>(a), trans_a, static_cast<const bf16*>(b), trans_b, beta,
        static_cast<float*>(c), static_cast<const float*>(bias));
  } else {
    gemm_fallback_kernel<bf16, bf16><<<grid, kFbThreads, 0, s>>>(
        m, n, k, alpha, static_cast<const bf16*>(a), trans_a, static_cast<const bf16*>(b), trans_b, beta,
        static_cast<bf16*>(c), static_cast<const bf16*>(bias));
  }
  return vs_check_launch("vs_gemm (gemm_fallback_kernel)");
}

bool fallback_requested() {
  static const bool on = [] {
    const char* v = getenv("VSWIFT_GEMM_FALLBACK");
    return v != nullptr && strcmp(v, "1") == 0;
  }();
  return on;
}

bool fused_gelu_requested() {
  static const bool on = [] {
    const char* v = getenv("VSWIFT_CUBLASLT_GELU");
    return v != nullptr && strcmp(v, "1") == 0;
  }();
  return on;
}

}  // namespace
}  // namespace vsw

using namespace vsw;

int vs_gemm(int ab_dtype, int c_dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const void* a, const void* b, float beta, void* c, const void* bias, int epilogue, void* aux,
            vs_stream stream) {
  static const char* fn = "vs_gemm";
  if (ab_dtype != VS_F32 && ab_dtype != VS_BF16) {
    return vs_fail(VS_ERR_DTYPE, "%s: ab_dtype %s is not supported (f32 or bf16)", fn, dtype_name(ab_dtype));
  }
  if (!(c_dtype == VS_F32 || (c_dtype == VS_BF16 && ab_dtype == VS_BF16))) {
    return vs_fail(VS_ERR_DTYPE, "%s: c_dtype %s with ab_dtype %s is not supported (f32, or bf16 with bf16 inputs)", fn,
                   dtype_name(c_dtype), dtype_name(ab_dtype));
  }
  if ((trans_a != 0 && trans_a != 1) || (trans_b != 0 && trans_b != 1)) {
    return vs_fail(VS_ERR_ARG, "%s: trans_a = %d, trans_b = %d must be 0 or 1", fn, trans_a, trans_b);
  }
  if (epilogue < VS_EPI_NONE || epilogue > VS_EPI_DGELU) {
    return vs_fail(VS_ERR_ARG, "%s: epilogue = %d is not a vs_epilogue (0..3)", fn, epilogue);
  }
  VSW_TRY(check_size(fn, "m", m));
  VSW_TRY(check_size(fn, "n", n));
  VSW_TRY(check_size(fn, "k", k));
  if (m > 0x7fffffff || n > 0x7fffffff || k > 0x7fffffff) {
    return vs_fail(VS_ERR_ARG, "%s: m = %lld, n = %lld, k = %lld: cuBLASLt takes dimensions up to 2^31 - 1", fn,
                   (long long)m, (long long)n, (long long)k);
  }
  const bool aux_epi = epilogue == VS_EPI_GELU_BIAS || epilogue == VS_EPI_DGELU;
  if (aux_epi && (alpha != 1.0f || beta != 0.0f)) {
    return vs_fail(VS_ERR_ARG, "%s: epilogue %s needs alpha 1 and beta 0, got alpha %g, beta %g", fn,
                   epilogue == VS_EPI_GELU_BIAS ? "GELU_BIAS" : "DGELU", double(alpha), double(beta));
  }
  if (m == 0 || n == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "c", c));
  if (epilogue == VS_EPI_BIAS) VSW_TRY(check_ptr(fn, "bias", bias));
  if (aux_epi) VSW_TRY(check_ptr(fn, "aux", aux));
  if (k > 0) {
    VSW_TRY(check_ptr(fn, "a", a));
    VSW_TRY(check_ptr(fn, "b", b));
  }
  const bool use_bias = bias != nullptr && (epilogue == VS_EPI_BIAS || epilogue == VS_EPI_GELU_BIAS);

  // Pointers need only their element's alignment: the matrices' real alignment steers the choice of
  // algorithm (see the top of the file) instead of being a precondition.
  const int64_t es_ab = dtype_size(ab_dtype), es_c = dtype_size(c_dtype);
  struct {
    const char* name;
    const void* p;
    int64_t size;
    bool check;
  } ptrs[] = {{"a", a, es_ab, k > 0},
              {"b", b, es_ab, k > 0},
              {"c", c, es_c, true},
              {"bias", bias, es_c, use_bias},
              {"aux", aux, es_c, aux_epi}};
  for (const auto& p : ptrs) {
    if (p.check && (reinterpret_cast<uintptr_t>(p.p) % uintptr_t(p.size)) != 0) {
      return vs_fail(VS_ERR_ALIGN, "%s: %s = %p is not aligned to its %lld-byte elements", fn, p.name, p.p,
                     (long long)p.size);
    }
  }

  cudaStream_t s = as_stream(stream);
  if (k == 0) {
    const unsigned grid = grid_for(m * n, 256);
    if (c_dtype == VS_BF16) {
      gemm_k0_kernel<bf16><<<grid, 256, 0, s>>>(m, n, beta, static_cast<const bf16*>(use_bias ? bias : nullptr),
                                                static_cast<bf16*>(c), static_cast<bf16*>(aux), epilogue);
    } else {
      gemm_k0_kernel<float><<<grid, 256, 0, s>>>(m, n, beta, static_cast<const float*>(use_bias ? bias : nullptr),
                                                 static_cast<float*>(c), static_cast<float*>(aux), epilogue);
    }
    return vs_check_launch("vs_gemm (gemm_k0_kernel)");
  }

  const int32_t ab_type = ab_dtype == VS_BF16 ? lt::kR16BF : lt::kR32F;
  const int32_t c_type = c_dtype == VS_BF16 ? lt::kR16BF : lt::kR32F;
  const int64_t a_row = (trans_a ? m : k) * es_ab, b_row = (trans_b ? k : n) * es_ab, c_row = n * es_c;
  Problem pr;
  pr.key = PlanKey{int32_t(m),
                   int32_t(n),
                   int32_t(k),
                   ab_type,
                   c_type,
                   trans_a,
                   trans_b,
                   lt::kEpilogueDefault,
                   matrix_alignment(a, a_row),
                   matrix_alignment(b, b_row),
                   matrix_alignment(c, c_row),
                   256,
                   256};
  pr.a = a;
  pr.b = b;
  pr.d = c;
  pr.bias = nullptr;
  pr.aux = nullptr;
  pr.alpha = alpha;
  pr.beta = beta;

  // cuBLASLt reads the bias and aux vectors with no alignment preference to tell it about: its epilogues
  // get them only 16-byte aligned. The fused GELU epilogues also need the aux leading dimension to be a
  // multiple of 8.
  const bool lt_bias = use_bias && aligned16(bias);
  const bool forced = fallback_requested();
  const bool fused = aux_epi && fused_gelu_requested() && !forced && n % 8 == 0 && aligned16(aux) &&
                     (!use_bias || lt_bias);
  bool no_algo = false;
  if (fused) {
    Problem f = pr;
    f.key.epilogue = epilogue == VS_EPI_DGELU ? lt::kEpilogueDGelu
                                              : (use_bias ? lt::kEpilogueGeluAuxBias : lt::kEpilogueGeluAux);
    f.bias = use_bias ? bias : nullptr;
    f.aux = aux;
    f.key.al_bias = alignment_of(f.bias);
    f.key.al_aux = matrix_alignment(aux, c_row);
    VSW_TRY(run_matmul(fn, f, s, &no_algo));
    if (!no_algo) return VS_OK;
  }

  // Exact GELU path and everything else: at most a bias epilogue, then our own pass.
  Problem g = pr;
  if (epilogue == VS_EPI_GELU_BIAS) g.d = aux;  // aux = A B + bias, then C = gelu(aux)
  g.key.al_c = matrix_alignment(g.d, c_row);
  bool bias_done = false;
  if (lt_bias && !forced) {
    g.key.epilogue = lt::kEpilogueBias;
    g.bias = bias;
    g.key.al_bias = alignment_of(bias);
    VSW_TRY(run_matmul(fn, g, s, &no_algo));
    bias_done = !no_algo;
  }
  if (!bias_done && use_bias) {
    // No bias epilogue (a misaligned bias, no algorithm, or the fallback forced): our kernel adds the
    // bias before its one rounding, as the contract in vswift.h says; a GEMM and then a bias pass would
    // round twice.
    VSW_TRY(launch_gemm_fallback(ab_dtype, c_dtype, trans_a, trans_b, m, n, k, alpha, a, b, beta, g.d, bias, s));
  } else if (!bias_done) {
    no_algo = true;
    if (!forced) {
      g.key.epilogue = lt::kEpilogueDefault;
      g.bias = nullptr;
      g.key.al_bias = 256;
      VSW_TRY(run_matmul(fn, g, s, &no_algo));
    }
    if (no_algo) {
      VSW_TRY(launch_gemm_fallback(ab_dtype, c_dtype, trans_a, trans_b, m, n, k, alpha, a, b, beta, g.d, nullptr, s));
    }
  }
  if (epilogue == VS_EPI_GELU_BIAS) return vs_gelu_fwd(c_dtype, m * n, aux, c, stream);
  // dgelu: C = (A B) * gelu'(aux), in place (the double rounding of a bf16 C costs at most one ulp).
  if (epilogue == VS_EPI_DGELU) return vs_gelu_bwd(c_dtype, m * n, aux, c, c, stream);
  return VS_OK;
}
