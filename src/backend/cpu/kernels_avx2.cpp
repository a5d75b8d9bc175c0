// Built with -mavx2 -mfma -mf16c (see CMakeLists.txt).
#define SLUICE_ISA_NS isa_avx2
#define SLUICE_ISA_ENUM Isa::Avx2
#define SLUICE_ISA_NAME "avx2"
#include "backend/cpu/kernels_impl.inc"
