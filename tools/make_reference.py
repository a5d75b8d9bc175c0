#!/usr/bin/env python3
"""Makes tiny random-weight models with reference logits from Hugging Face transformers.

Runs where torch + transformers are installed (the GPU machine, through the device tool):

    python3 tools/make_reference.py --out DIR [--only NAME ...] [--dump-source DIR]

Each fixture is a directory holding config.json, model.safetensors and reference.safetensors:
  prompt{i}.ids     int32 [T]           random token ids
  prompt{i}.logits  float32 [T, vocab]  logits at every position (float32, CPU, eager attention)
  prompt{i}.greedy  int32 [16]          greedy continuation (model.generate, KV cache on)
Weights are bf16 (FP8 where the fixture says so). Fixtures are small (vocab 512) so they can be committed under tests/fixtures/.

Weights are random but not the library defaults everywhere: norms, routing biases and
sigmoid gates get perturbed values so that code which ignored them would fail the comparison.
"""
import argparse
import copy
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

VOCAB = 512

DEEPSEEK_BASE = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 96,
    "moe_intermediate_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "n_shared_experts": 1,
    "n_routed_experts": 16,
    "num_experts_per_tok": 4,
    "n_group": 4,
    "topk_group": 2,
    "routed_scaling_factor": 2.5,
    "norm_topk_prob": True,
    "first_k_dense_replace": 1,
    "q_lora_rank": 48,
    "kv_lora_rank": 32,
    "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8,
    "v_head_dim": 24,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 4096,
    "rope_interleave": True,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def deepseek(**over):
    c = copy.deepcopy(DEEPSEEK_BASE)
    c.update(over)
    c["qk_head_dim"] = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    c["head_dim"] = c["qk_rope_head_dim"]
    return c


YARN_V3 = {  # DeepSeek-V3's real rope scaling (original context scaled down to fit the test)
    "rope_type": "yarn",
    "rope_theta": 10000.0,
    "factor": 40.0,
    "original_max_position_embeddings": 64,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
}
YARN_K2 = {  # Kimi K2's
    "rope_type": "yarn",
    "rope_theta": 50000.0,
    "factor": 32.0,
    "original_max_position_embeddings": 64,
    "beta_fast": 1.0,
    "beta_slow": 1.0,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
}

QWEN35_BASE = {
    "architectures": ["Qwen3_5MoeForCausalLM"],
    "model_type": "qwen3_5_moe_text",
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "num_hidden_layers": 8,
    "layer_types": ["linear_attention"] * 3 + ["full_attention"]
    + ["linear_attention"] * 3 + ["full_attention"],
    "full_attention_interval": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 16,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_value_head_dim": 16,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 48,
    "num_experts": 16,
    "num_experts_per_tok": 4,
    "partial_rotary_factor": 0.25,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                        "partial_rotary_factor": 0.25},
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def qwen35(**over):
    c = copy.deepcopy(QWEN35_BASE)
    c.update(over)
    return c


# name -> (config, prompt lengths, fp8 block quantization)
FIXTURES = {
    # q_lora on, groups 4 choose 2, one dense layer: the shape of DeepSeek-V3 itself.
    "dsv3-groups": (deepseek(), [40, 7], False),
    # q_lora off (DeepSeek-V2-Lite style q_proj), YaRN as in V3, no renormalization, 2 dense.
    "dsv3-noqlora-yarn": (deepseek(q_lora_rank=None, rope_parameters=YARN_V3, max_position_embeddings=2560, norm_topk_prob=False,
                                   first_k_dense_replace=2, n_group=2, topk_group=1,
                                   n_shared_experts=2), [96, 5], False),
    # Kimi K2 style: one group, YaRN with K2's parameters, more experts per token.
    "kimi-k2-yarn": (deepseek(rope_parameters=YARN_K2, max_position_embeddings=2048, n_group=1, topk_group=1, num_experts_per_tok=6,
                              routed_scaling_factor=2.827), [80], False),
    # Rotary on halves rather than interleaved pairs.
    "dsv3-nointerleave": (deepseek(rope_interleave=False), [33], False),
    # DeepSeek's FP8 checkpoint format: e4m3 weights with 128x128 block scales (partial blocks).
    "dsv3-fp8": (deepseek(hidden_size=192, intermediate_size=320, moe_intermediate_size=160,
                          q_lora_rank=160, kv_lora_rank=144, n_routed_experts=8, n_group=2,
                          topk_group=1, num_experts_per_tok=2), [24], True),
    # Qwen3.5-MoE: the real 3 linear : 1 full pattern, a prompt crossing chunk boundaries.
    "qwen35-3to1": (qwen35(), [300, 17], False),
    "qwen35-small": (qwen35(num_hidden_layers=4, layer_types=["linear_attention", "full_attention"] * 2,
                            full_attention_interval=2), [64], False),
}


def perturb(model, gen):
    """Non-default values for norms, biases and gates, so that ignoring them shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("e_score_correction_bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2:
                p.copy_(0.08 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn(b.shape, generator=gen))


FP8_SKIP = ("embed_tokens", "lm_head", "norm", "mlp.gate.weight")


def fp8_quantize(state):
    """DeepSeek's layout: weight float8_e4m3fn, weight_scale_inv float32 [ceil(r/128), ceil(c/128)];
    the real weight is weight * scale_inv per 128x128 block. Returns (fp8 state, dequantized)."""
    out, deq = {}, {}
    for k, w in state.items():
        if w.dim() != 2 or any(s in k for s in FP8_SKIP):
            out[k], deq[k] = w, w
            continue
        w = w.float()
        r, c = w.shape
        br, bc = math.ceil(r / 128), math.ceil(c / 128)
        scale = torch.zeros(br, bc, dtype=torch.float32)
        q = torch.zeros(r, c, dtype=torch.float8_e4m3fn)
        for i in range(br):
            for j in range(bc):
                blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
                s = blk.abs().max().clamp(min=1e-12) / 448.0
                scale[i, j] = s
                q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = (blk / s).to(torch.float8_e4m3fn)
        full = scale.repeat_interleave(128, 0)[:r].repeat_interleave(128, 1)[:, :c]
        out[k] = q
        out[k + "_scale_inv"] = scale
        deq[k] = q.to(torch.float32) * full
    return out, deq


def make(name, out_dir):
    cfg_dict, lengths, fp8 = FIXTURES[name]
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cls = transformers.AutoConfig.for_model(cfg_dict["model_type"])
    config = cls.from_dict({k: v for k, v in cfg_dict.items() if k != "model_type"})
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    perturb(model, gen)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    # Stored as bf16 to keep fixtures small; the reference computes in float32 from those values.
    # Only what is saved: rotary inv_freq buffers must keep their float32 values.
    with torch.no_grad():
        saved = [p for _, p in model.named_parameters()]
        saved += [b for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")]
        for p in saved:
            p.copy_(p.to(torch.bfloat16).to(p.dtype))
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
    if fp8:
        # Replace the saved weights by their FP8 form and run the reference on what it decodes to.
        from safetensors.torch import load_file
        path = os.path.join(d, "model.safetensors")
        state = load_file(path)
        q, deq = fp8_quantize(state)
        save_file({k: v.contiguous() for k, v in q.items()}, path, metadata={"format": "pt"})
        # Reload through from_pretrained so that its key conversions apply to the decoded weights.
        tmp = d + ".dequantized"
        os.makedirs(tmp, exist_ok=True)
        save_file({k: v.contiguous() for k, v in deq.items()}, os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        config.save_pretrained(tmp)
        model = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                                  attn_implementation="eager")
        model.eval()
        import shutil
        shutil.rmtree(tmp)
        with open(os.path.join(d, "config.json")) as f:
            cj = json.load(f)
        cj["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                     "quant_method": "fp8", "weight_block_size": [128, 128]}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cj, f, indent=2)
    ref = {}
    for i, T in enumerate(lengths):
        ids = torch.randint(3, VOCAB, (1, T), generator=gen)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float()
            g = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                               max_new_tokens=16, min_new_tokens=16, pad_token_id=0)
        ref[f"prompt{i}.ids"] = ids[0].to(torch.int32)
        ref[f"prompt{i}.logits"] = logits.contiguous()
        ref[f"prompt{i}.greedy"] = g[0, T:].to(torch.int32).contiguous()
    save_file(ref, os.path.join(d, "reference.safetensors"))
    for junk in ("generation_config.json",):
        p = os.path.join(d, junk)
        if os.path.exists(p):
            os.remove(p)
    print(f"{name}: ok, logits std {ref['prompt0.logits'].std():.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--dump-source", help="copy the transformers modeling files read here to DIR")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    print("torch", torch.__version__, "transformers", transformers.__version__, flush=True)
    if a.dump_source:
        import shutil
        os.makedirs(a.dump_source, exist_ok=True)
        root = os.path.dirname(transformers.__file__)
        for rel in ("models/deepseek_v3/modeling_deepseek_v3.py",
                    "models/deepseek_v3/configuration_deepseek_v3.py",
                    "models/qwen3_5_moe/modeling_qwen3_5_moe.py",
                    "models/qwen3_5_moe/configuration_qwen3_5_moe.py",
                    "modeling_rope_utils.py"):
            src = os.path.join(root, rel)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(a.dump_source, os.path.basename(rel)))
    failed = 0
    for name in a.only or FIXTURES:
        try:
            make(name, a.out)
        except Exception as e:  # keep going: one broken variant must not lose the others
            failed += 1
            print(f"{name}: FAILED: {type(e).__name__}: {e}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
