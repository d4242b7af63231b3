// cudaDataType_t values of CUDA's library_types.h that gemm.cu checks its own copies against.
#pragma once

typedef enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType;
