// Dequantized tensors of llama.cpp-made GGUFs vs the bf16 weights they were made from.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/quant_ref.h"
#include "common.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "formats/gguf.h"

namespace sluice {
namespace {

struct Pair {
    std::string gguf, hf;
    int expert;  // -1: not an expert slice
};

std::vector<Pair> pairs() {
    std::vector<Pair> p = {{"token_embd.weight", "model.embed_tokens.weight", -1},
                           {"output.weight", "lm_head.weight", -1}};
    for (int l : {0, 5}) {
        const std::string b = "blk." + std::to_string(l) + ".",
                          h = "model.layers." + std::to_string(l) + ".";
        p.push_back({b + "attn_q.weight", h + "self_attn.q_proj.weight", -1});
        p.push_back({b + "attn_k.weight", h + "self_attn.k_proj.weight", -1});
        p.push_back({b + "attn_v.weight", h + "self_attn.v_proj.weight", -1});
        p.push_back({b + "attn_output.weight", h + "self_attn.o_proj.weight", -1});
        for (int e : {0, 17, 31}) {
            const std::string he = h + "mlp.experts." + std::to_string(e) + ".";
            p.push_back({b + "ffn_gate_exps.weight", he + "gate_proj.weight", e});
            p.push_back({b + "ffn_up_exps.weight", he + "up_proj.weight", e});
            p.push_back({b + "ffn_down_exps.weight", he + "down_proj.weight", e});
        }
    }
    return p;
}

// Relative RMS error each k-quant should stay under on real trained weights.
double bound(DType t) {
    switch (t) {
        case DType::Q8_0:
            return 0.008;  // uniform rounding: (amax/127)/sqrt(12) ~ 0.55% of sigma
        case DType::Q6_K:
            return 0.02;
        case DType::Q5_K:
            return 0.04;
        case DType::Q4_K:
            return 0.08;
        case DType::Q3_K:
            return 0.20;
        case DType::Q2_K:
            return 0.40;
        default:
            return 0.0;
    }
}

void compare_file(const std::string& quant) {
    const GGUFFile g = read_gguf(test::tiny_gguf(quant));
    TensorFiles gf(g.index);
    const TensorIndex hi = read_safetensors_dir(test::tiny_hf());
    TensorFiles hf(hi);
    std::map<DType, int> seen;
    for (const Pair& p : pairs()) {
        TensorView q = gf.view(g.index.get(p.gguf));
        if (p.expert >= 0) q = q.slice2d(p.expert);
        const TensorView b = hf.view(hi.get(p.hf));
        ASSERT_EQ(q.cols(), b.cols()) << p.gguf;
        ASSERT_EQ(q.rows(), b.rows()) << p.gguf;
        const int64_t n = q.cols();
        std::vector<float> x((size_t)n), y((size_t)n);
        double err = 0, ref = 0, worst_block = 0;
        for (int64_t r = 0; r < q.rows(); ++r) {
            dequantize_row_ref(q.dtype, q.row(r), y.data(), n);
            dequantize_row_ref(DType::BF16, b.row(r), x.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                err += std::pow((double)y[(size_t)i] - x[(size_t)i], 2);
                ref += (double)x[(size_t)i] * x[(size_t)i];
            }
            if (q.dtype == DType::Q8_0) {
                // Per block: |error| <= d/2 from rounding plus the f16 rounding of d itself.
                const block_q8_0* blk = (const block_q8_0*)q.row(r);
                for (int64_t k = 0; k < n / QK8_0; ++k) {
                    const double d = f16_to_f32(blk[k].d);
                    for (int j = 0; j < QK8_0; ++j) {
                        const double e =
                            std::abs(y[(size_t)(k * QK8_0 + j)] - x[(size_t)(k * QK8_0 + j)]);
                        worst_block = std::max(worst_block, e / (d * 0.5 * (1 + 127.0 / 1024)));
                    }
                }
            }
        }
        const double rel = std::sqrt(err / ref);
        EXPECT_LT(rel, bound(q.dtype))
            << quant << " " << p.gguf << " (" << dtype_name(q.dtype) << ")";
        if (q.dtype == DType::Q8_0) {
            EXPECT_LE(worst_block, 1.0) << p.gguf << ": error beyond the Q8_0 rounding bound";
        }
        seen[q.dtype]++;
    }
    for (auto [t, n] : seen)
        std::printf("  %s: %s checked on %d tensors\n", quant.c_str(), dtype_name(t), n);
}

TEST(DequantReal, Q8_0MatchesBf16WithinRounding) {
    compare_file("Q8_0");
}
TEST(DequantReal, Q4_K_MMatchesBf16) {
    compare_file("Q4_K_M");
}
TEST(DequantReal, Q2_KMatchesBf16) {
    compare_file("Q2_K");
}

}  // namespace
}  // namespace sluice
