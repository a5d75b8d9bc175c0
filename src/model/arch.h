#pragma once
// Architectures as data: names in GGUF and HF files, tensor names per role, and the
// forward function (one file per architecture under archs/).
#include <array>
#include <string>
#include <vector>

#include "model/config.h"

namespace sluice {

enum class TensorRole {
    TokEmbd,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOut,
    AttnQNorm,
    AttnKNorm,
    FfnNorm,
    FfnRouter,
    ExpGate,
    ExpUp,
    ExpDown,
    kCount
};
constexpr size_t kRoleCount = (size_t)TensorRole::kCount;

class Model;
struct ForwardArgs;
using ForwardFn = void (*)(Model& m, const ForwardArgs& a);

struct ArchInfo {
    ArchId id;
    const char* gguf_name;
    std::vector<std::string> hf_architectures;
    std::vector<std::string> hf_model_types;
    // Name patterns; "{l}" is the layer, "{e}" the expert (HF keeps one tensor per expert,
    // GGUF stacks them). nullptr: the role does not exist in that format.
    std::array<const char*, kRoleCount> gguf_names;
    std::array<const char*, kRoleCount> hf_names;
    ForwardFn forward;
};

const ArchInfo& arch_info(ArchId id);
const ArchInfo* arch_by_gguf_name(const std::string& name);
const ArchInfo* arch_by_hf_name(const std::string& architecture, const std::string& model_type);
std::string supported_arch_names();
// Expands "{l}" and "{e}" in a pattern.
std::string tensor_name(const char* pattern, int layer, int expert = -1);

}  // namespace sluice
