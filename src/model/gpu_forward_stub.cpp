#include "core/error.h"
#include "model/gpu_forward.h"

namespace sluice {

std::unique_ptr<DeviceForward> make_cuda_forward(Model&, const GpuOptions&) {
    fail(
        "--backend cuda: this sluice was built without CUDA (nvcc was not found at configure "
        "time)");
}

}  // namespace sluice
