// Built with the AVX-512 flags plus -mavx512vnni (see CMakeLists.txt): the integer dot
// products fuse multiply-add and accumulate (vpdpwssd, vpdpbusd).
#define SLUICE_ISA_NS isa_avx512vnni
#define SLUICE_ISA_ENUM Isa::Avx512Vnni
#define SLUICE_ISA_NAME "avx512vnni"
#include "backend/cpu/kernels_impl.inc"
