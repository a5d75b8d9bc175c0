// Built with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c (see CMakeLists.txt).
#define SLUICE_ISA_NS isa_avx512
#define SLUICE_ISA_ENUM Isa::Avx512
#define SLUICE_ISA_NAME "avx512"
#include "backend/cpu/kernels_impl.inc"
