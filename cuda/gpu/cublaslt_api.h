// The part of the cuBLASLt C API that gemm.cu uses, declared here because the build has no cuBLAS headers:
// libcublasLt is opened with dlopen at run time. Everything lives in vsw::lt so that enum_check.cpp can
// include this file next to the real <cublasLt.h> and compare the two.
//
// Where the values come from (all checked by enum_check.cpp when it is compiled against real headers):
// - cublasLt.h and cublas_api.h of cuBLAS 13.4 (CUBLAS_VER_MAJOR 13, read from a public copy of the CUDA 13
//   headers) and of cuBLAS 11.11 (Debian bookworm's nvidia-cuda-dev 11.8.89, against which enum_check.cpp
//   compiles cleanly): every value and struct used here is the same in both.
// - NVIDIA's documentation of the same enums as exposed by nvmath-python
//   (docs.nvidia.com/cuda/nvmath-python/latest/bindings/generated/nvmath.bindings.cublasLt.MatmulDescAttribute.html
//   and .../nvmath.bindings.cublasLt.Epilogue.html): MatmulDescAttribute TRANSA 3, TRANSB 4, EPILOGUE 7,
//   BIAS_POINTER 8, EPILOGUE_AUX_POINTER 11, EPILOGUE_AUX_LD 12; Epilogue DEFAULT 1, BIAS 4, GELU_AUX 160,
//   GELU_AUX_BIAS 164, DGELU 192.
// - cudaDataType_t comes from library_types.h, which the CUDA runtime ships; gemm.cu static_asserts our
//   copies against it in every build.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

namespace vsw {
namespace lt {

// cublasStatus_t (cublas_api.h). An enum, so an int in the C ABI.
typedef int Status;
constexpr Status kStatusSuccess = 0;           // CUBLAS_STATUS_SUCCESS
constexpr Status kStatusNotInitialized = 1;    // CUBLAS_STATUS_NOT_INITIALIZED
constexpr Status kStatusAllocFailed = 3;       // CUBLAS_STATUS_ALLOC_FAILED
constexpr Status kStatusInvalidValue = 7;      // CUBLAS_STATUS_INVALID_VALUE
constexpr Status kStatusArchMismatch = 8;      // CUBLAS_STATUS_ARCH_MISMATCH
constexpr Status kStatusMappingError = 11;     // CUBLAS_STATUS_MAPPING_ERROR
constexpr Status kStatusExecutionFailed = 13;  // CUBLAS_STATUS_EXECUTION_FAILED
constexpr Status kStatusInternalError = 14;    // CUBLAS_STATUS_INTERNAL_ERROR
constexpr Status kStatusNotSupported = 15;     // CUBLAS_STATUS_NOT_SUPPORTED

// cublasOperation_t (cublas_api.h); set as an int32_t attribute.
constexpr int32_t kOpN = 0;  // CUBLAS_OP_N
constexpr int32_t kOpT = 1;  // CUBLAS_OP_T

// cublasComputeType_t (cublas_api.h). CUBLAS_COMPUTE_32F keeps f32 inputs in full f32 (no TF32
// down-conversion, which would need CUBLAS_COMPUTE_32F_FAST_TF32 = 77) and accumulates bf16 in f32.
constexpr int kCompute32F = 68;  // CUBLAS_COMPUTE_32F

// cudaDataType_t (library_types.h).
constexpr int kR32F = 0;    // CUDA_R_32F
constexpr int kR16BF = 14;  // CUDA_R_16BF

// cublasLtMatmulDescAttributes_t (cublasLt.h).
constexpr int kDescTransA = 3;             // CUBLASLT_MATMUL_DESC_TRANSA, int32_t
constexpr int kDescTransB = 4;             // CUBLASLT_MATMUL_DESC_TRANSB, int32_t
constexpr int kDescEpilogue = 7;           // CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t
constexpr int kDescBiasPointer = 8;        // CUBLASLT_MATMUL_DESC_BIAS_POINTER, const void*
constexpr int kDescEpilogueAuxPointer = 11;  // CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, void*
constexpr int kDescEpilogueAuxLd = 12;     // CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t
constexpr int kDescBiasDataType = 26;      // CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t (cudaDataType)

// cublasLtEpilogue_t (cublasLt.h).
constexpr uint32_t kEpilogueDefault = 1;       // CUBLASLT_EPILOGUE_DEFAULT
constexpr uint32_t kEpilogueBias = 4;          // CUBLASLT_EPILOGUE_BIAS
constexpr uint32_t kEpilogueGeluAux = 160;     // CUBLASLT_EPILOGUE_GELU_AUX = GELU (32) | 128
constexpr uint32_t kEpilogueGeluAuxBias = 164; // CUBLASLT_EPILOGUE_GELU_AUX_BIAS = GELU_AUX | BIAS (4)
constexpr uint32_t kEpilogueDGelu = 192;       // CUBLASLT_EPILOGUE_DGELU = 64 | 128

// cublasLtMatrixLayoutAttribute_t and cublasLtOrder_t (cublasLt.h). The layouts use the default
// column-major order (set by cublasLtMatrixLayoutCreate); declared for completeness of the check.
constexpr int kLayoutOrder = 1;       // CUBLASLT_MATRIX_LAYOUT_ORDER, int32_t
constexpr int32_t kOrderCol = 0;      // CUBLASLT_ORDER_COL
constexpr int32_t kOrderRow = 1;      // CUBLASLT_ORDER_ROW

// cublasLtMatmulPreferenceAttributes_t (cublasLt.h).
constexpr int kPrefMaxWorkspaceBytes = 1;  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t
constexpr int kPrefMinAlignmentA = 5;      // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t
constexpr int kPrefMinAlignmentB = 6;      // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, uint32_t
constexpr int kPrefMinAlignmentC = 7;      // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, uint32_t
constexpr int kPrefMinAlignmentD = 8;      // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, uint32_t

// Opaque handles: pointers in the real header too (cublasLtHandle_t = struct cublasLtContext*, the
// descriptor types are pointers to semi-opaque structs whose size changes between versions, which is
// why they are only ever created by the library).
typedef struct LtContext* Handle;
typedef struct LtMatmulDescOpaque* MatmulDesc;
typedef struct LtMatrixLayoutOpaque* MatrixLayout;
typedef struct LtMatmulPreferenceOpaque* MatmulPreference;

// cublasLtMatmulAlgo_t: uint64_t data[8], copied by value.
struct MatmulAlgo {
  uint64_t data[8];
};

// cublasLtMatmulHeuristicResult_t.
struct MatmulHeuristicResult {
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

// Function types, parameter for parameter as in cublasLt.h (enums passed as int, the C ABI's size).
typedef Status (*CreateFn)(Handle* handle);
typedef Status (*DestroyFn)(Handle handle);
typedef size_t (*GetVersionFn)(void);
typedef const char* (*GetStatusStringFn)(Status status);
typedef Status (*MatmulDescCreateFn)(MatmulDesc* desc, int compute_type, int scale_type);
typedef Status (*MatmulDescDestroyFn)(MatmulDesc desc);
typedef Status (*MatmulDescSetAttributeFn)(MatmulDesc desc, int attr, const void* buf, size_t size);
typedef Status (*MatrixLayoutCreateFn)(MatrixLayout* layout, int type, uint64_t rows, uint64_t cols, int64_t ld);
typedef Status (*MatrixLayoutDestroyFn)(MatrixLayout layout);
typedef Status (*MatmulPreferenceCreateFn)(MatmulPreference* pref);
typedef Status (*MatmulPreferenceDestroyFn)(MatmulPreference pref);
typedef Status (*MatmulPreferenceSetAttributeFn)(MatmulPreference pref, int attr, const void* buf, size_t size);
typedef Status (*MatmulAlgoGetHeuristicFn)(Handle handle, MatmulDesc desc, MatrixLayout a, MatrixLayout b,
                                           MatrixLayout c, MatrixLayout d, MatmulPreference pref, int requested,
                                           MatmulHeuristicResult results[], int* returned);
typedef Status (*MatmulFn)(Handle handle, MatmulDesc desc, const void* alpha, const void* a, MatrixLayout a_layout,
                           const void* b, MatrixLayout b_layout, const void* beta, const void* c,
                           MatrixLayout c_layout, void* d, MatrixLayout d_layout, const MatmulAlgo* algo,
                           void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace lt
}  // namespace vsw
