#define SLUICE_ISA_NS isa_scalar
#define SLUICE_ISA_ENUM Isa::Scalar
#define SLUICE_ISA_NAME "scalar"
#include "backend/cpu/kernels_impl.inc"
