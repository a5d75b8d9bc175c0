#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace sluice {
namespace isa_scalar {
extern const CpuKernels kKernels;
}
namespace isa_avx2 {
extern const CpuKernels kKernels;
}
namespace isa_avx512 {
extern const CpuKernels kKernels;
}
namespace isa_avx512vnni {
extern const CpuKernels kKernels;
}
namespace isa_avx512bf16 {
extern const CpuKernels kKernels;
}
namespace isa_amx {
extern const CpuKernels kKernels;
}

namespace {

constexpr long kArchReqXcompPerm = 0x1023;  // <asm/prctl.h> ARCH_REQ_XCOMP_PERM
constexpr long kXfeatureXtiledata = 18;

bool cpu_has(Isa isa) {
    switch (isa) {
        case Isa::Scalar:
            return true;
        case Isa::Avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   __builtin_cpu_supports("f16c");
        case Isa::Avx512:
            return cpu_has(Isa::Avx2) && __builtin_cpu_supports("avx512f") &&
                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx512dq");
        case Isa::Avx512Vnni:
            return cpu_has(Isa::Avx512) && __builtin_cpu_supports("avx512vnni");
        case Isa::Avx512Bf16:
            return cpu_has(Isa::Avx512Vnni) && __builtin_cpu_supports("avx512bf16");
        case Isa::Amx: {
            // Linux hands out the 8 KiB tile state only on request (once, for the whole
            // process); a tile instruction without it is SIGILL.
            static const bool ok =
                cpu_has(Isa::Avx512Vnni) && __builtin_cpu_supports("avx512bf16") &&
                __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") &&
                syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
            return ok;
        }
    }
    return false;
}

const CpuKernels* choose() {
    if (const char* env = std::getenv("SLUICE_ISA"); env && *env) {
        const std::string want(env);
        Isa isa;
        if (want == "scalar")
            isa = Isa::Scalar;
        else if (want == "avx2")
            isa = Isa::Avx2;
        else if (want == "avx512")
            isa = Isa::Avx512;
        else if (want == "avx512vnni")
            isa = Isa::Avx512Vnni;
        else if (want == "avx512bf16")
            isa = Isa::Avx512Bf16;
        else if (want == "amx")
            isa = Isa::Amx;
        else
            fail("SLUICE_ISA='" + want +
                 "' is not one of scalar, avx2, avx512, avx512vnni, avx512bf16, amx");
        const CpuKernels* k = cpu_kernels_for(isa);
        check(k != nullptr, "SLUICE_ISA=" + want + ": this CPU does not support it");
        return k;
    }
    for (Isa isa : {Isa::Amx, Isa::Avx512Bf16, Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2})
        if (const CpuKernels* k = cpu_kernels_for(isa)) return k;
    return &isa_scalar::kKernels;
}

}  // namespace

const CpuKernels* cpu_kernels_for(Isa isa) {
    if (!cpu_has(isa)) return nullptr;
    switch (isa) {
        case Isa::Scalar:
            return &isa_scalar::kKernels;
        case Isa::Avx2:
            return &isa_avx2::kKernels;
        case Isa::Avx512:
            return &isa_avx512::kKernels;
        case Isa::Avx512Vnni:
            return &isa_avx512vnni::kKernels;
        case Isa::Avx512Bf16:
            return &isa_avx512bf16::kKernels;
        case Isa::Amx:
            return &isa_amx::kKernels;
    }
    return nullptr;
}

std::vector<Isa> supported_isas() {
    std::vector<Isa> out;
    for (Isa isa :
         {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Avx512Bf16, Isa::Amx})
        if (cpu_has(isa)) out.push_back(isa);
    return out;
}

const CpuKernels& cpu_kernels() {
    static const CpuKernels* k = choose();
    return *k;
}

}  // namespace sluice
