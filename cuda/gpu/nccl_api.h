// The part of the NCCL C API that nccl.cu uses, declared here because the build has no NCCL headers:
// libnccl is opened with dlopen at run time. Everything lives in vsw::nccl so that enum_check.cpp can
// include this file next to the real <nccl.h> and compare the two.
//
// Where the values come from (checked by enum_check.cpp when it is compiled against a real nccl.h):
// - NVIDIA/nccl src/nccl.h.in (the template of nccl.h): NCCL_UNIQUE_ID_BYTES 128, ncclResult_t,
//   ncclRedOp_t (ncclSum 0 .. ncclAvg 4), ncclDataType_t (ncclInt8 0 .. ncclBfloat16 9) and the
//   signatures of ncclGetUniqueId, ncclCommInitRank (the id is passed by value), ncclCommDestroy,
//   ncclAllReduce, ncclBroadcast, ncclGroupStart/End, ncclGetErrorString, ncclGetLastError.
// - NVIDIA's NCCL documentation (docs.nvidia.com/deeplearning/nccl/user-guide/docs/api/types.html and the
//   nccl4py "Types and Constants" page): ncclResult_t values 0..6 and ncclDataType_t FLOAT32 7,
//   BFLOAT16 9, INT32 2, UINT8 1.
#pragma once

#include <stddef.h>

#include <cuda_runtime_api.h>

namespace vsw {
namespace nccl {

// ncclResult_t.
typedef int Result;
constexpr Result kSuccess = 0;             // ncclSuccess
constexpr Result kUnhandledCudaError = 1;  // ncclUnhandledCudaError
constexpr Result kSystemError = 2;         // ncclSystemError
constexpr Result kInternalError = 3;       // ncclInternalError
constexpr Result kInvalidArgument = 4;     // ncclInvalidArgument
constexpr Result kInvalidUsage = 5;        // ncclInvalidUsage
constexpr Result kRemoteError = 6;         // ncclRemoteError
constexpr Result kInProgress = 7;          // ncclInProgress

// ncclDataType_t.
typedef int DataType;
constexpr DataType kUint8 = 1;     // ncclUint8
constexpr DataType kInt32 = 2;     // ncclInt32
constexpr DataType kFloat32 = 7;   // ncclFloat32
constexpr DataType kBfloat16 = 9;  // ncclBfloat16

// ncclRedOp_t.
typedef int RedOp;
constexpr RedOp kSum = 0;  // ncclSum
constexpr RedOp kAvg = 4;  // ncclAvg (NCCL >= 2.10)

// ncclUniqueId: typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } with NCCL_UNIQUE_ID_BYTES 128.
constexpr int kUniqueIdBytes = 128;
struct UniqueId {
  char internal[kUniqueIdBytes];
};

// ncclComm_t = struct ncclComm*.
typedef struct NcclCommOpaque* Comm;

typedef Result (*GetVersionFn)(int* version);
typedef Result (*GetUniqueIdFn)(UniqueId* id);
typedef Result (*CommInitRankFn)(Comm* comm, int nranks, UniqueId id, int rank);
typedef Result (*CommDestroyFn)(Comm comm);
typedef Result (*AllReduceFn)(const void* send, void* recv, size_t count, DataType dtype, RedOp op, Comm comm,
                              cudaStream_t stream);
typedef Result (*BroadcastFn)(const void* send, void* recv, size_t count, DataType dtype, int root, Comm comm,
                              cudaStream_t stream);
typedef Result (*GroupStartFn)(void);
typedef Result (*GroupEndFn)(void);
typedef const char* (*GetErrorStringFn)(Result result);
typedef const char* (*GetLastErrorFn)(Comm comm);

}  // namespace nccl
}  // namespace vsw
