// The avx512vnni kernels plus bf16 batch products by VDPBF16PS (bf16dot_impl.inc), for CPUs
// with AVX512-BF16 but no tile unit; built with -mavx512bf16 (see CMakeLists.txt).
#define SLUICE_ISA_NS isa_avx512bf16
#define SLUICE_ISA_ENUM Isa::Avx512Bf16
#define SLUICE_ISA_NAME "avx512bf16"
#include "backend/cpu/kernels_impl.inc"
