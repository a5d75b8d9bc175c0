#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "runtime/perplexity.h"

namespace sluice::cli {

void register_eval(CLI::App& app, EvalPplOptions& o) {
    CLI::App* e = app.add_subcommand("eval", "measure model quality");
    e->require_subcommand(1);
    CLI::App* p = e->add_subcommand("ppl", "perplexity over a text file (llama-perplexity method)");
    add_model_options(p, o.m);
    p->add_option("-f,--file", o.file, "UTF-8 text file")->required();
    p->add_option("--ctx", o.ctx, "window size in tokens; the second half of each window is scored")
        ->check(CLI::Range(4, 1 << 20));
    p->add_option("--chunks", o.chunks, "number of windows (default: all)")->check(CLI::Range(1, 1 << 30));
}

int cmd_eval_ppl(const EvalPplOptions& o) {
    const std::string text = read_text_file(o.file);
    LoadedModel lm = open_model(o.m, o.ctx);
    ThreadPool pool(resolve_threads(o.m.threads));
    const std::vector<int32_t> tokens = lm.tokenizer->encode(text, /*add_special=*/true, /*parse_special=*/false);
    PerplexityParams pp{o.ctx, o.chunks};
    auto progress = [&](int ch, int n, double ppl) {
        if (!o.m.json && (o.m.verbose || ch == n || ch % 16 == 0))
            std::fprintf(stderr, "\r[%d/%d] ppl %.4f", ch, n, ppl);
    };
    const PerplexityResult r = perplexity(*lm.model, *lm.tokenizer, pool, tokens, pp, progress);
    if (o.m.json) {
        print_json({{"ppl", r.ppl},
                    {"tokens", r.n_scored},
                    {"chunks", r.n_chunks},
                    {"ctx", o.ctx},
                    {"experts_per_token", lm.model->config().n_expert_used},
                    {"text_tokens", r.n_text_tokens},
                    {"seconds", r.seconds}});
    } else {
        std::fprintf(stderr, "\n");
        std::printf("perplexity %.4f over %lld tokens (%d windows of %d, K=%d) in %.1f s\n", r.ppl,
                    (long long)r.n_scored, r.n_chunks, o.ctx, lm.model->config().n_expert_used, r.seconds);
    }
    return 0;
}

}  // namespace sluice::cli
