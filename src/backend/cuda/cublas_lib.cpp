#include "backend/cuda/cublas_lib.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "core/error.h"

namespace sluice::cuda {
namespace {

template <class F>
void bind(void* h, const char* name, F& f) {
    f = (F)dlsym(h, name);
    if (!f) fail(std::string("CUDA backend: ") + SLUICE_CUBLAS_SONAME + " lacks " + name);
}

}  // namespace

const CublasLib& cublas() {
    static CublasLib lib;
    static std::once_flag once;
    std::call_once(once, [] {
        void* h = dlopen(SLUICE_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            fail(std::string("CUDA backend: cannot load ") + SLUICE_CUBLAS_SONAME + ": " +
                 dlerror());
        bind(h, "cublasCreate_v2", lib.create);
        bind(h, "cublasDestroy_v2", lib.destroy);
        bind(h, "cublasSetStream_v2", lib.set_stream);
        bind(h, "cublasGemmEx", lib.gemm_ex);
        bind(h, "cublasGetStatusString", lib.status_string);
    });
    return lib;
}

}  // namespace sluice::cuda
