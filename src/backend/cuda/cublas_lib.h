#pragma once
// cuBLAS, opened with dlopen when the first Gpu is made: linked normally it maps ~155 MB
// into every process at start (measured), CPU-only runs included, and that memory would
// count against --mem-budget.
#include <cublas_v2.h>

namespace sluice::cuda {

struct CublasLib {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    // The C entry point; C++ also sees an inline overload taking cudaDataType computeType.
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                              const void*, const void*, cudaDataType, int, const void*,
                              cudaDataType, int, const void*, void*, cudaDataType, int,
                              cublasComputeType_t, cublasGemmAlgo_t);
    decltype(&cublasGetStatusString) status_string;
};

// Loads the library on first use; throws Error naming it if it cannot be opened.
const CublasLib& cublas();

}  // namespace sluice::cuda
