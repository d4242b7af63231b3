// Compile-time check of cublaslt_api.h and nccl_api.h against NVIDIA's real headers. Not part of the build
// (the build has no cuBLAS or NCCL headers); run it wherever they are installed, for example:
//
//   g++ -std=c++17 -fsyntax-only -DVS_REAL_HEADERS -I/usr/local/cuda/include
//       -I<dir with cublasLt.h> -I<dir with nccl.h> cuda/gpu/enum_check.cpp      (one command line)
//
// pip wheels: <site-packages>/nvidia/cublas/include and <site-packages>/nvidia/nccl/include (cu12), or
// <site-packages>/nvidia/cu13/include. Add -DVS_CHECK_NO_NCCL to check cuBLASLt alone.
// Every assertion compares one of our values, struct layouts or function signatures with the header's.
#ifndef VS_REAL_HEADERS
#error "enum_check.cpp compiles only against the real cuBLAS/NCCL headers: define VS_REAL_HEADERS and add their -I paths"
#endif

#include <stddef.h>

#include <type_traits>

#include <cublasLt.h>
#include <library_types.h>
#ifndef VS_CHECK_NO_NCCL
#include <nccl.h>
#endif

#include "cublaslt_api.h"
#include "nccl_api.h"

namespace {

// Two function pointer types are interchangeable through dlsym when they take the same number of
// parameters and each parameter (and the result) has the same size and the same register class
// (pointer, floating point, or integer/enum/struct). Enums are passed as int in the C ABI.
template <typename... T>
struct TypeList {};

template <typename A, typename B>
constexpr bool same_class() {
  return sizeof(A) == sizeof(B) && std::is_pointer<A>::value == std::is_pointer<B>::value &&
         std::is_floating_point<A>::value == std::is_floating_point<B>::value &&
         std::is_class<A>::value == std::is_class<B>::value;
}

template <typename L1, typename L2, typename = void>
struct SameParams : std::false_type {};
template <typename... A1, typename... A2>
struct SameParams<TypeList<A1...>, TypeList<A2...>, typename std::enable_if<sizeof...(A1) == sizeof...(A2)>::type>
    : std::integral_constant<bool, (true && ... && same_class<A1, A2>())> {};

template <typename F1, typename F2>
struct SameAbi : std::false_type {};
template <typename R1, typename... A1, typename R2, typename... A2>
struct SameAbi<R1 (*)(A1...), R2 (*)(A2...)>
    : std::integral_constant<bool, (std::is_void<R1>::value ? std::is_void<R2>::value : same_class<R1, R2>()) &&
                                       SameParams<TypeList<A1...>, TypeList<A2...>>::value> {};

#define VS_SAME_ABI(real, ours) static_assert(SameAbi<decltype(&real), ours>::value, #real " signature")

}  // namespace

// ------------------------------------------------------------------------------------------------
// cuBLASLt
// ------------------------------------------------------------------------------------------------
namespace lt = vsw::lt;

static_assert(sizeof(cublasStatus_t) == sizeof(lt::Status), "cublasStatus_t size");
static_assert(lt::kStatusSuccess == CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS");
static_assert(lt::kStatusNotInitialized == CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED");
static_assert(lt::kStatusAllocFailed == CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED");
static_assert(lt::kStatusInvalidValue == CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE");
static_assert(lt::kStatusArchMismatch == CUBLAS_STATUS_ARCH_MISMATCH, "CUBLAS_STATUS_ARCH_MISMATCH");
static_assert(lt::kStatusMappingError == CUBLAS_STATUS_MAPPING_ERROR, "CUBLAS_STATUS_MAPPING_ERROR");
static_assert(lt::kStatusExecutionFailed == CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED");
static_assert(lt::kStatusInternalError == CUBLAS_STATUS_INTERNAL_ERROR, "CUBLAS_STATUS_INTERNAL_ERROR");
static_assert(lt::kStatusNotSupported == CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED");

static_assert(lt::kOpN == CUBLAS_OP_N, "CUBLAS_OP_N");
static_assert(lt::kOpT == CUBLAS_OP_T, "CUBLAS_OP_T");
static_assert(sizeof(cublasOperation_t) == sizeof(int32_t), "TRANSA/TRANSB are int32_t attributes");
static_assert(lt::kCompute32F == CUBLAS_COMPUTE_32F, "CUBLAS_COMPUTE_32F");
static_assert(sizeof(cublasComputeType_t) == sizeof(int), "cublasComputeType_t size");
static_assert(lt::kR32F == CUDA_R_32F, "CUDA_R_32F");
static_assert(lt::kR16BF == CUDA_R_16BF, "CUDA_R_16BF");
static_assert(sizeof(cudaDataType_t) == sizeof(int), "cudaDataType_t size");

static_assert(lt::kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA, "CUBLASLT_MATMUL_DESC_TRANSA");
static_assert(lt::kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB, "CUBLASLT_MATMUL_DESC_TRANSB");
static_assert(lt::kDescEpilogue == CUBLASLT_MATMUL_DESC_EPILOGUE, "CUBLASLT_MATMUL_DESC_EPILOGUE");
static_assert(lt::kDescBiasPointer == CUBLASLT_MATMUL_DESC_BIAS_POINTER, "CUBLASLT_MATMUL_DESC_BIAS_POINTER");
static_assert(lt::kDescEpilogueAuxPointer == CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
              "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER");
static_assert(lt::kDescEpilogueAuxLd == CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD");
static_assert(lt::kDescBiasDataType == CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, "CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE");
static_assert(sizeof(cublasLtMatmulDescAttributes_t) == sizeof(int), "cublasLtMatmulDescAttributes_t size");

static_assert(lt::kEpilogueDefault == CUBLASLT_EPILOGUE_DEFAULT, "CUBLASLT_EPILOGUE_DEFAULT");
static_assert(lt::kEpilogueBias == CUBLASLT_EPILOGUE_BIAS, "CUBLASLT_EPILOGUE_BIAS");
static_assert(lt::kEpilogueGeluAux == CUBLASLT_EPILOGUE_GELU_AUX, "CUBLASLT_EPILOGUE_GELU_AUX");
static_assert(lt::kEpilogueGeluAuxBias == CUBLASLT_EPILOGUE_GELU_AUX_BIAS, "CUBLASLT_EPILOGUE_GELU_AUX_BIAS");
static_assert(lt::kEpilogueDGelu == CUBLASLT_EPILOGUE_DGELU, "CUBLASLT_EPILOGUE_DGELU");
static_assert(sizeof(cublasLtEpilogue_t) == sizeof(uint32_t), "EPILOGUE is a uint32_t attribute");

static_assert(lt::kLayoutOrder == CUBLASLT_MATRIX_LAYOUT_ORDER, "CUBLASLT_MATRIX_LAYOUT_ORDER");
static_assert(lt::kOrderCol == CUBLASLT_ORDER_COL, "CUBLASLT_ORDER_COL");
static_assert(lt::kOrderRow == CUBLASLT_ORDER_ROW, "CUBLASLT_ORDER_ROW");
static_assert(sizeof(cublasLtMatrixLayoutAttribute_t) == sizeof(int), "cublasLtMatrixLayoutAttribute_t size");

static_assert(lt::kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
              "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES");
static_assert(lt::kPrefMinAlignmentA == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
              "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES");
static_assert(lt::kPrefMinAlignmentB == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
              "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES");
static_assert(lt::kPrefMinAlignmentC == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
              "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES");
static_assert(lt::kPrefMinAlignmentD == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
              "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES");
static_assert(sizeof(cublasLtMatmulPreferenceAttributes_t) == sizeof(int), "cublasLtMatmulPreferenceAttributes_t");

static_assert(sizeof(lt::MatmulAlgo) == sizeof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t size");
static_assert(alignof(lt::MatmulAlgo) == alignof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t alignment");
static_assert(sizeof(lt::MatmulHeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t),
              "cublasLtMatmulHeuristicResult_t size");
static_assert(offsetof(lt::MatmulHeuristicResult, algo) == offsetof(cublasLtMatmulHeuristicResult_t, algo),
              "cublasLtMatmulHeuristicResult_t::algo");
static_assert(offsetof(lt::MatmulHeuristicResult, workspaceSize) ==
                  offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize),
              "cublasLtMatmulHeuristicResult_t::workspaceSize");
static_assert(offsetof(lt::MatmulHeuristicResult, state) == offsetof(cublasLtMatmulHeuristicResult_t, state),
              "cublasLtMatmulHeuristicResult_t::state");
static_assert(offsetof(lt::MatmulHeuristicResult, wavesCount) ==
                  offsetof(cublasLtMatmulHeuristicResult_t, wavesCount),
              "cublasLtMatmulHeuristicResult_t::wavesCount");

static_assert(sizeof(lt::Handle) == sizeof(cublasLtHandle_t), "cublasLtHandle_t");
static_assert(sizeof(lt::MatmulDesc) == sizeof(cublasLtMatmulDesc_t), "cublasLtMatmulDesc_t");
static_assert(sizeof(lt::MatrixLayout) == sizeof(cublasLtMatrixLayout_t), "cublasLtMatrixLayout_t");
static_assert(sizeof(lt::MatmulPreference) == sizeof(cublasLtMatmulPreference_t), "cublasLtMatmulPreference_t");

VS_SAME_ABI(cublasLtCreate, lt::CreateFn);
VS_SAME_ABI(cublasLtDestroy, lt::DestroyFn);
VS_SAME_ABI(cublasLtGetVersion, lt::GetVersionFn);
VS_SAME_ABI(cublasLtGetStatusString, lt::GetStatusStringFn);
VS_SAME_ABI(cublasLtMatmulDescCreate, lt::MatmulDescCreateFn);
VS_SAME_ABI(cublasLtMatmulDescDestroy, lt::MatmulDescDestroyFn);
VS_SAME_ABI(cublasLtMatmulDescSetAttribute, lt::MatmulDescSetAttributeFn);
VS_SAME_ABI(cublasLtMatrixLayoutCreate, lt::MatrixLayoutCreateFn);
VS_SAME_ABI(cublasLtMatrixLayoutDestroy, lt::MatrixLayoutDestroyFn);
VS_SAME_ABI(cublasLtMatmulPreferenceCreate, lt::MatmulPreferenceCreateFn);
VS_SAME_ABI(cublasLtMatmulPreferenceDestroy, lt::MatmulPreferenceDestroyFn);
VS_SAME_ABI(cublasLtMatmulPreferenceSetAttribute, lt::MatmulPreferenceSetAttributeFn);
VS_SAME_ABI(cublasLtMatmulAlgoGetHeuristic, lt::MatmulAlgoGetHeuristicFn);
VS_SAME_ABI(cublasLtMatmul, lt::MatmulFn);

// ------------------------------------------------------------------------------------------------
// NCCL
// ------------------------------------------------------------------------------------------------
#ifndef VS_CHECK_NO_NCCL
namespace nc = vsw::nccl;

static_assert(sizeof(ncclResult_t) == sizeof(nc::Result), "ncclResult_t size");
static_assert(nc::kSuccess == ncclSuccess, "ncclSuccess");
static_assert(nc::kUnhandledCudaError == ncclUnhandledCudaError, "ncclUnhandledCudaError");
static_assert(nc::kSystemError == ncclSystemError, "ncclSystemError");
static_assert(nc::kInternalError == ncclInternalError, "ncclInternalError");
static_assert(nc::kInvalidArgument == ncclInvalidArgument, "ncclInvalidArgument");
static_assert(nc::kInvalidUsage == ncclInvalidUsage, "ncclInvalidUsage");
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
static_assert(nc::kRemoteError == ncclRemoteError, "ncclRemoteError");
VS_SAME_ABI(ncclGetLastError, nc::GetLastErrorFn);
#endif
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
static_assert(nc::kInProgress == ncclInProgress, "ncclInProgress");
#endif

static_assert(sizeof(ncclDataType_t) == sizeof(nc::DataType), "ncclDataType_t size");
static_assert(nc::kUint8 == ncclUint8, "ncclUint8");
static_assert(nc::kInt32 == ncclInt32, "ncclInt32");
static_assert(nc::kFloat32 == ncclFloat32, "ncclFloat32");
static_assert(nc::kBfloat16 == ncclBfloat16, "ncclBfloat16");

static_assert(sizeof(ncclRedOp_t) == sizeof(nc::RedOp), "ncclRedOp_t size");
static_assert(nc::kSum == ncclSum, "ncclSum");
static_assert(nc::kAvg == ncclAvg, "ncclAvg");

static_assert(nc::kUniqueIdBytes == NCCL_UNIQUE_ID_BYTES, "NCCL_UNIQUE_ID_BYTES");
static_assert(sizeof(nc::UniqueId) == sizeof(ncclUniqueId), "ncclUniqueId size");
static_assert(alignof(nc::UniqueId) == alignof(ncclUniqueId), "ncclUniqueId alignment");
static_assert(sizeof(nc::Comm) == sizeof(ncclComm_t), "ncclComm_t");

VS_SAME_ABI(ncclGetVersion, nc::GetVersionFn);
VS_SAME_ABI(ncclGetUniqueId, nc::GetUniqueIdFn);
VS_SAME_ABI(ncclCommInitRank, nc::CommInitRankFn);
VS_SAME_ABI(ncclCommDestroy, nc::CommDestroyFn);
VS_SAME_ABI(ncclAllReduce, nc::AllReduceFn);
VS_SAME_ABI(ncclBroadcast, nc::BroadcastFn);
VS_SAME_ABI(ncclGroupStart, nc::GroupStartFn);
VS_SAME_ABI(ncclGroupEnd, nc::GroupEndFn);
VS_SAME_ABI(ncclGetErrorString, nc::GetErrorStringFn);
#endif

int main() { return 0; }
