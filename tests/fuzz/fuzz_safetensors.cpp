// Any byte string must parse or throw sluice::Error: no crash, leak, hang or UB.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const sluice::TensorIndex idx = sluice::parse_safetensors(data, size, "fuzz.safetensors");
        for (const auto& t : idx.tensors)
            if (t.offset + t.nbytes > size) __builtin_trap();
    } catch (const sluice::Error&) {
    }
    return 0;
}
