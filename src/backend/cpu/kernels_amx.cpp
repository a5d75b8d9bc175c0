// The avx512vnni kernels plus the AMX-BF16 batch products (amx_impl.inc); built with
// -mavx512bf16 -mamx-tile -mamx-bf16 (see CMakeLists.txt).
#define SLUICE_ISA_NS isa_amx
#define SLUICE_ISA_ENUM Isa::Amx
#define SLUICE_ISA_NAME "amx"
#include "backend/cpu/kernels_impl.inc"
