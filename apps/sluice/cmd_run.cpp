#include <algorithm>
#include <cstdio>
#include <iostream>

#include "backend/cpu/kernels.h"
#include "commands.h"
#include "core/error.h"
#include "core/strings.h"
#include "runtime/generate.h"
#include "stream/stats.h"

namespace sluice::cli {

void register_run(CLI::App& app, RunOptions& o) {
    CLI::App* c = app.add_subcommand("run", "generate text from a prompt");
    add_model_options(c, o.m);
    auto* p = c->add_option("-p,--prompt", o.prompt,
                            "prompt text (UTF-8; special tokens such as <|im_start|> are parsed)");
    auto* ids = c->add_option("--prompt-ids", o.prompt_ids, "prompt as comma-separated token ids");
    p->excludes(ids);
    c->add_option("-n,--n-predict", o.n_predict, "tokens to generate")
        ->check(CLI::Range(0, 1 << 24));
    c->add_option("--ctx", o.ctx, "context size (default: prompt + n, up to the model's)")
        ->check(CLI::Range(0, 1 << 24));
    c->add_option("--temp", o.temp, "temperature; 0 = greedy")->check(CLI::Range(0.0f, 100.0f));
    c->add_option("--top-k", o.top_k, "top-k (0 = off)")->check(CLI::Range(0, 1 << 24));
    c->add_option("--top-p", o.top_p, "top-p (1 = off)")->check(CLI::Range(0.0f, 1.0f));
    c->add_option("--min-p", o.min_p, "min-p (0 = off)")->check(CLI::Range(0.0f, 1.0f));
    c->add_option("--repeat-penalty", o.repeat_penalty, "repetition penalty (1 = off)")
        ->check(CLI::Range(0.0f, 10.0f));
    c->add_option("--seed", o.seed, "random seed (same seed, same output)");
    c->add_flag("--ignore-eos", o.ignore_eos, "keep generating after end-of-generation tokens");
}

int cmd_run(const RunOptions& o) {
    check(!o.prompt.empty() || !o.prompt_ids.empty(),
          "run: give a prompt with -p TEXT or --prompt-ids 1,2,3");
    LoadedModel lm = open_model(o.m, o.ctx > 0 ? o.ctx : 4096);
    const Tokenizer& tok = *lm.tokenizer;
    std::vector<int32_t> prompt =
        o.prompt_ids.empty() ? tok.encode(o.prompt, true, true) : parse_ids(o.prompt_ids);
    ThreadPool pool(resolve_threads(o.m.threads));
    GenerateParams gp;
    gp.n_predict = o.n_predict;
    gp.n_ctx = o.ctx;
    gp.stop_at_eog = !o.ignore_eos;
    gp.sampling = {o.temp, o.top_k, o.top_p, o.min_p, o.repeat_penalty, 64, o.seed};
    if (!o.m.json) {
        std::fprintf(stderr,
                     "model: %s (%s, %d layers, %d experts, K=%d), %d threads, kernels %s\n",
                     o.m.model.c_str(), lm.model->config().arch_name.c_str(),
                     lm.model->config().n_layer, lm.model->config().n_expert,
                     lm.model->config().n_expert_used, pool.size(), cpu_kernels().name);
        if (!o.prompt.empty()) std::cout << o.prompt << std::flush;
    }
    auto on_text = [&](const std::string& s) {
        if (!o.m.json) std::cout << s << std::flush;
    };
    const StreamStats s0 = lm.model->experts().stats();
    const uint64_t disk0 = process_disk_read_bytes();
    StreamStats prev = s0;
    // Per phase (the prompt, then each decode step): time, of which stalled on expert reads,
    // and the expert traffic of that phase alone.
    auto report = [&](const std::string& what, double ms) {
        const StreamStats now = lm.model->experts().stats(), d = now - prev;
        prev = now;
        std::fprintf(stderr,
                     "\n[%s] %.1f ms (compute %.1f, io wait %.1f) | experts %llu, hit %.0f%%, "
                     "read %s",
                     what.c_str(), ms, std::max(0.0, ms - 1000 * d.io_wait_s), 1000 * d.io_wait_s,
                     (unsigned long long)d.acquires, 100 * d.hit_rate(),
                     format_bytes(d.bytes_read).c_str());
    };
    if (o.m.verbose && !o.m.json) {
        gp.on_prefill = [&](double ms) { report("prompt", ms); };
        gp.on_token = [&](int i, double ms) { report("token " + std::to_string(i), ms); };
    }
    DeviceForward* dev = lm.model->device();
    const VramStats v0 = dev ? dev->stats() : VramStats{};
    const GenerateResult r = generate(*lm.model, tok, pool, prompt, gp, on_text);
    const VramStats v1 = dev ? dev->stats() : VramStats{};
    const uint64_t v_acq = v1.acquires - v0.acquires, v_hits = v1.hits - v0.hits,
                   v_bytes = v1.bytes_h2d - v0.bytes_h2d;
    const StreamStats st = lm.model->experts().stats() - s0;
    const uint64_t disk = process_disk_read_bytes() - disk0;
    if (o.m.json) {
        print_json({{"tokens", r.tokens},
                    {"text", r.text},
                    {"prompt_tokens", r.n_prompt},
                    {"prefill_tok_s", r.prefill_tok_s()},
                    {"decode_tok_s", r.decode_tok_s()},
                    {"prefill_ms", 1000 * r.prefill_s},
                    {"decode_ms", 1000 * r.decode_s},
                    {"stop_reason", r.stop_reason},
                    {"streaming", stats_json(st)},
                    {"disk_read_bytes", disk},
                    {"memory_plan", plan_json(lm.model->memory_plan())},
                    {"backend", dev ? "cuda" : "cpu"},
                    {"gpu_experts",
                     {{"acquired", v_acq}, {"vram_hits", v_hits}, {"bytes_to_gpu", v_bytes}}}});
    } else {
        std::cout << std::endl;
        std::fprintf(stderr,
                     "prefill: %d tokens, %.1f tok/s | decode: %zu tokens, %.1f tok/s | stop: %s\n",
                     r.n_prompt, r.prefill_tok_s(), r.tokens.size(), r.decode_tok_s(),
                     r.stop_reason.c_str());
        std::fprintf(stderr,
                     "experts: %llu used, hit rate %.1f%%, %s read, %s from disk, io wait %.2f s\n",
                     (unsigned long long)st.acquires, 100 * st.hit_rate(),
                     format_bytes(st.bytes_read).c_str(), format_bytes(disk).c_str(), st.io_wait_s);
        if (dev && v_acq > 0)  // all-resident runs route on the device: nothing to count
            std::fprintf(
                stderr,
                "gpu experts: %llu made resident, VRAM hit rate %.1f%%, %s copied to the GPU\n",
                (unsigned long long)v_acq, 100.0 * (double)v_hits / (double)v_acq,
                format_bytes(v_bytes).c_str());
    }
    return 0;
}

}  // namespace sluice::cli
