#include <cstdio>
#include <iostream>

#include "backend/cpu/kernels.h"
#include "commands.h"
#include "core/error.h"
#include "runtime/generate.h"

namespace sluice::cli {

void register_run(CLI::App& app, RunOptions& o) {
    CLI::App* c = app.add_subcommand("run", "generate text from a prompt");
    add_model_options(c, o.m);
    auto* p = c->add_option("-p,--prompt", o.prompt, "prompt text (UTF-8; special tokens such as <|im_start|> are parsed)");
    auto* ids = c->add_option("--prompt-ids", o.prompt_ids, "prompt as comma-separated token ids");
    p->excludes(ids);
    c->add_option("-n,--n-predict", o.n_predict, "tokens to generate")->check(CLI::Range(0, 1 << 24));
    c->add_option("--ctx", o.ctx, "context size (default: prompt + n, up to the model's)")->check(CLI::Range(0, 1 << 24));
    c->add_option("--temp", o.temp, "temperature; 0 = greedy")->check(CLI::Range(0.0f, 100.0f));
    c->add_option("--top-k", o.top_k, "top-k (0 = off)")->check(CLI::Range(0, 1 << 24));
    c->add_option("--top-p", o.top_p, "top-p (1 = off)")->check(CLI::Range(0.0f, 1.0f));
    c->add_option("--min-p", o.min_p, "min-p (0 = off)")->check(CLI::Range(0.0f, 1.0f));
    c->add_option("--repeat-penalty", o.repeat_penalty, "repetition penalty (1 = off)")->check(CLI::Range(0.0f, 10.0f));
    c->add_option("--seed", o.seed, "random seed (same seed, same output)");
    c->add_flag("--ignore-eos", o.ignore_eos, "keep generating after end-of-generation tokens");
}

int cmd_run(const RunOptions& o) {
    check(!o.prompt.empty() || !o.prompt_ids.empty(), "run: give a prompt with -p TEXT or --prompt-ids 1,2,3");
    LoadedModel lm = open_model(o.m);
    const Tokenizer& tok = *lm.tokenizer;
    std::vector<int32_t> prompt = o.prompt_ids.empty() ? tok.encode(o.prompt, true, true) : parse_ids(o.prompt_ids);
    ThreadPool pool(resolve_threads(o.m.threads));
    GenerateParams gp;
    gp.n_predict = o.n_predict;
    gp.n_ctx = o.ctx;
    gp.stop_at_eog = !o.ignore_eos;
    gp.sampling = {o.temp, o.top_k, o.top_p, o.min_p, o.repeat_penalty, 64, o.seed};
    if (!o.m.json) {
        std::fprintf(stderr, "model: %s (%s, %d layers, %d experts, K=%d), %d threads, kernels %s\n",
                     o.m.model.c_str(), lm.model->config().arch_name.c_str(), lm.model->config().n_layer,
                     lm.model->config().n_expert, lm.model->config().n_expert_used, pool.size(), cpu_kernels().name);
        if (!o.prompt.empty()) std::cout << o.prompt << std::flush;
    }
    auto on_text = [&](const std::string& s) {
        if (!o.m.json) std::cout << s << std::flush;
    };
    const GenerateResult r = generate(*lm.model, tok, pool, prompt, gp, on_text);
    if (o.m.json) {
        print_json({{"tokens", r.tokens},
                    {"text", r.text},
                    {"prompt_tokens", r.n_prompt},
                    {"prefill_tok_s", r.prefill_tok_s()},
                    {"decode_tok_s", r.decode_tok_s()},
                    {"stop_reason", r.stop_reason}});
    } else {
        std::cout << std::endl;
        std::fprintf(stderr, "prefill: %d tokens, %.1f tok/s | decode: %zu tokens, %.1f tok/s | stop: %s\n", r.n_prompt,
                     r.prefill_tok_s(), r.tokens.size(), r.decode_tok_s(), r.stop_reason.c_str());
    }
    return 0;
}

}  // namespace sluice::cli
