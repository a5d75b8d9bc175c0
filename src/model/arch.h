#pragma once
// Architectures as data: names in GGUF and HF files, tensor names per role, and the
// forward function (one file per architecture under archs/).
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
    AttnQA,       // MLA: q down-projection [q_lora_rank rows, n_embd]
    AttnQANorm,   // MLA: [q_lora_rank]
    AttnQB,       // MLA: q up-projection [n_head * head_dim rows, q_lora_rank]
    AttnKvA,      // MLA: [kv_lora_rank + rope dims rows, n_embd]
    AttnKvANorm,  // MLA: [kv_lora_rank]
    AttnKvB,      // MLA: [n_head * (qk_nope + v_head_dim) rows, kv_lora_rank]
    AttnKB,       // MLA, split form: [n_head][kv_lora_rank rows, qk_nope]
    AttnVB,       // MLA, split form: [n_head][v_head_dim rows, kv_lora_rank]
    FfnNorm,
    FfnGate,  // dense FFN layers
    FfnUp,
    FfnDown,
    FfnRouter,
    ExpProbsBias,  // routing bias added to the scores for the choice only [n_expert]
    ExpGate,
    ExpUp,
    ExpDown,
    ShexpGate,  // shared expert: always on
    ShexpUp,
    ShexpDown,
    ShexpGateInp,  // shared expert gate: out scaled by sigmoid(w . x). [n_embd]
    // Gated DeltaNet (linear attention) layers; shapes as in DeltaNetConfig.
    SsmQkv,    // [conv_channels rows, n_embd]
    SsmZ,      // output gate: [n_v_heads * v_dim rows, n_embd]
    SsmBeta,   // [n_v_heads rows, n_embd]
    SsmAlpha,  // [n_v_heads rows, n_embd]
    SsmA,      // -exp(A_log): [n_v_heads]
    SsmDtBias,  // [n_v_heads]
    SsmConv,   // depthwise causal conv: [conv_channels rows, conv_kernel]
    SsmNorm,   // gated RMSNorm per v head: [v_dim]
    SsmOut,    // [n_embd rows, n_v_heads * v_dim]
};

// How an HF tensor differs from its GGUF form, which is what the forward pass expects
// (llama.cpp's converter applies the same change).
enum class HfFix {
    None,
    PlusOne,  // zero-centred RMSNorm weight: w + 1
    NegExp,   // A_log: -exp(w)
};

// Tensor names of one role; "{l}" is the layer, "{e}" the expert (HF keeps one tensor per
// expert, GGUF stacks them). nullptr: the role does not exist in that format.
struct RoleNames {
    TensorRole role;
    const char* gguf;
    const char* hf;
    HfFix hf_fix = HfFix::None;
};
class Model;
struct ForwardArgs;
using ForwardFn = void (*)(Model& m, const ForwardArgs& a);

struct ArchInfo {
    ArchId id;
    const char* gguf_name;
    std::vector<std::string> hf_architectures;
    std::vector<std::string> hf_model_types;
    std::vector<RoleNames> names;  // roles this architecture has
    ForwardFn forward;
    // Name pattern of a role, or nullptr where the architecture or format lacks it.
    const char* name(TensorRole role, bool hf) const;
    HfFix hf_fix(TensorRole role) const;
};

const ArchInfo& arch_info(ArchId id);
const ArchInfo* arch_by_gguf_name(const std::string& name);
const ArchInfo* arch_by_hf_name(const std::string& architecture, const std::string& model_type);
std::string supported_arch_names();
// Expands "{l}" and "{e}" in a pattern.
std::string tensor_name(const char* pattern, int layer, int expert = -1);

}  // namespace sluice
