// Any byte string must parse or throw sluice::Error: no crash, leak, hang or UB.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const sluice::GGUFFile g = sluice::parse_gguf(data, size, "fuzz.gguf");
        for (const auto& t : g.index.tensors)
            if (t.offset + t.nbytes > size) __builtin_trap();  // the reader promised in-bounds data
        (void)g.get_string("general.architecture");
    } catch (const sluice::Error&) {
    }
    return 0;
}
