#include <cstdio>
#include <fstream>

#include "commands.h"
#include "core/error.h"
#include "core/strings.h"
#include "io/mapped_file.h"
#include "runtime/kld.h"
#include "runtime/perplexity.h"

namespace sluice::cli {
namespace {

void add_text_options(CLI::App* c, std::string& file, int& ctx, int& chunks) {
    c->add_option("-f,--file", file, "UTF-8 text file")->required();
    c->add_option("--ctx", ctx, "window size in tokens; the second half of each window is scored")
        ->check(CLI::Range(4, 1 << 20));
    c->add_option("--chunks", chunks, "number of windows (default: all)")
        ->check(CLI::Range(1, 1 << 30));
}

std::vector<int32_t> text_tokens(const Tokenizer& tok, const std::string& file) {
    return tok.encode(read_text_file(file), /*add_special=*/true, /*parse_special=*/false);
}

bool is_logits_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    char m[4] = {};
    return f.read(m, 4) && std::string(m, 4) == "SLGT";
}

int eval_ppl(const EvalPplOptions& o) {
    LoadedModel lm = open_model(o.m, o.ctx);
    ThreadPool pool(resolve_threads(o.m.threads));
    const std::vector<int32_t> tokens = text_tokens(*lm.tokenizer, o.file);
    auto progress = [&](int ch, int n, double ppl) {
        if (!o.m.json && (o.m.verbose || ch == n || ch % 16 == 0))
            std::fprintf(stderr, "\r[%d/%d] ppl %.4f", ch, n, ppl);
    };
    const PerplexityResult r =
        perplexity(*lm.model, *lm.tokenizer, pool, tokens, {o.ctx, o.chunks}, progress);
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
                    (long long)r.n_scored, r.n_chunks, o.ctx, lm.model->config().n_expert_used,
                    r.seconds);
    }
    return 0;
}

nlohmann::json kld_json(const KldResult& r) {
    return {{"kld_mean", r.kld_mean},
            {"kld_median", r.kld_median},
            {"kld_p99", r.kld_p99},
            {"top1_agreement", r.top1_agreement},
            {"ppl", r.ppl},
            {"ppl_base", r.ppl_base},
            {"delta_ppl", r.ppl - r.ppl_base},
            {"rms_delta_p", r.rms_dp},
            {"positions", r.n}};
}

int eval_kld(const EvalKldOptions& o) {
    const EvalPplOptions& e = o.e;
    ThreadPool pool(resolve_threads(e.m.threads));
    const PerplexityParams pp{e.ctx, e.chunks};
    LoadedModel lm = open_model(e.m, e.ctx);
    const std::vector<int32_t> tokens = text_tokens(*lm.tokenizer, e.file);
    BaseLogits base;
    if (is_logits_file(o.base)) {
        base = BaseLogits::load(o.base);
    } else {
        ModelOptions bo = e.m;
        bo.model = o.base;
        bo.experts_per_token = 0;  // the base runs as trained
        LoadedModel b = open_model(bo, e.ctx);
        base = collect_base(*b.model, *b.tokenizer, pool, text_tokens(*b.tokenizer, e.file), pp,
                            o.top_k);
    }
    if (!o.save_logits.empty()) base.save(o.save_logits);
    const KldResult r = compare_to_base(base, *lm.model, *lm.tokenizer, pool, tokens, pp);
    if (e.m.json) {
        print_json(kld_json(r));
    } else {
        std::printf(
            "KLD mean %.6f median %.6f p99 %.6f | top-1 agreement %.2f%% | PPL %.4f vs base %.4f "
            "(%+.4f) | "
            "RMS dp %.4f | %lld positions\n",
            r.kld_mean, r.kld_median, r.kld_p99, 100 * r.top1_agreement, r.ppl, r.ppl_base,
            r.ppl - r.ppl_base, r.rms_dp, (long long)r.n);
    }
    return 0;
}

int eval_sweep(const EvalSweepOptions& o) {
    check(!o.models.empty(), "eval sweep: give at least one model with -m");
    ThreadPool pool(resolve_threads(o.threads));
    const PerplexityParams pp{o.ctx, o.chunks};
    ModelOptions mo;
    mo.json = true;  // keep the table clean: no memory plan on stderr
    mo.model = o.models[0];
    LoadedModel base_model = open_model(mo, o.ctx);
    const int trained_k = base_model.model->config().n_expert_used;
    std::vector<int> ks;
    if (!o.ks.empty()) {
        for (const auto& s : split(o.ks, ',')) ks.push_back(std::stoi(s));
    } else {
        for (int k = 1; k <= trained_k; ++k) ks.push_back(k);
        if (2 * trained_k <= base_model.model->config().n_expert) ks.push_back(2 * trained_k);
    }
    const std::vector<int32_t> tokens = text_tokens(*base_model.tokenizer, o.file);
    std::fprintf(stderr, "base: %s at K=%d\n", o.models[0].c_str(), trained_k);
    const BaseLogits base =
        collect_base(*base_model.model, *base_model.tokenizer, pool, tokens, pp);
    nlohmann::json rows = nlohmann::json::array();
    if (!o.json) {
        std::printf(
            "| model | K | PPL | KLD mean | KLD p99 | top-1 agree | RMS dp "
            "|\n|---|---|---|---|---|---|---|\n");
        std::fflush(stdout);
    }
    for (const auto& path : o.models) {
        mo.model = path;
        LoadedModel lm = path == o.models[0] ? std::move(base_model) : open_model(mo, o.ctx);
        for (int k : ks) {
            if (k > lm.model->config().n_expert) continue;
            lm.model->set_experts_per_token(k);
            const KldResult r = compare_to_base(base, *lm.model, *lm.tokenizer, pool,
                                                text_tokens(*lm.tokenizer, o.file), pp);
            nlohmann::json row = kld_json(r);
            row["model"] = path;
            row["experts_per_token"] = k;
            rows.push_back(row);
            if (!o.json) {
                std::printf("| %s | %d | %.4f | %.5f | %.4f | %.2f%% | %.4f |\n", path.c_str(), k,
                            r.ppl, r.kld_mean, r.kld_p99, 100 * r.top1_agreement, r.rms_dp);
                std::fflush(stdout);
            }
        }
    }
    if (o.json)
        print_json({{"base", o.models[0]}, {"base_k", trained_k}, {"ctx", o.ctx}, {"rows", rows}});
    return 0;
}

}  // namespace

void register_eval(CLI::App& app, EvalOptions& o) {
    CLI::App* e = app.add_subcommand("eval", "measure model quality");
    e->require_subcommand(1);
    o.ppl_cmd = e->add_subcommand("ppl", "perplexity over a text file (llama-perplexity method)");
    add_model_options(o.ppl_cmd, o.ppl.m);
    add_text_options(o.ppl_cmd, o.ppl.file, o.ppl.ctx, o.ppl.chunks);

    o.kld_cmd = e->add_subcommand(
        "kld", "KL divergence, top-1 agreement and Δ perplexity against a base model");
    add_model_options(o.kld_cmd, o.kld.e.m);
    add_text_options(o.kld_cmd, o.kld.e.file, o.kld.e.ctx, o.kld.e.chunks);
    o.kld_cmd
        ->add_option("--base", o.kld.base,
                     "base model (GGUF/HF dir) or logits saved with --save-logits")
        ->required();
    o.kld_cmd->add_option("--save-logits", o.kld.save_logits, "store the base's top logits here");
    o.kld_cmd->add_option("--top-k", o.kld.top_k, "base log-probs kept per position")
        ->check(CLI::Range(1, 4096));

    o.sweep_cmd = e->add_subcommand(
        "sweep",
        "table over experts-per-token K and weight files vs the first model at its trained K");
    o.sweep_cmd->add_option("-m,--model", o.sweep.models, "models; the first is the base")
        ->required();
    o.sweep_cmd->add_option("--ks", o.sweep.ks,
                            "comma-separated K values (default 1..trained K, and 2x)");
    add_text_options(o.sweep_cmd, o.sweep.file, o.sweep.ctx, o.sweep.chunks);
    o.sweep_cmd->add_option("-t,--threads", o.sweep.threads, "CPU threads (default: all)");
    o.sweep_cmd->add_flag("--json", o.sweep.json, "print one JSON object on stdout");

    o.json_cmd = e->add_subcommand(
        "json", "share of parseable JSON replies to prompts that ask for JSON (chat models)");
    add_model_options(o.json_cmd, o.json.m);
    o.json_cmd->add_option("--prompts", o.json.prompts,
                           "JSON lines {\"prompt\", \"keys\"} (default: data/eval/json_prompts.jsonl)");
    o.json_cmd->add_option("--system", o.json.system, "system message");
    o.json_cmd->add_option("-n,--n-predict", o.json.n_predict, "most tokens per reply")
        ->check(CLI::Range(1, 1 << 16));
    o.json_cmd->add_option("--limit", o.json.limit, "first N prompts only");
}

int cmd_eval(const EvalOptions& o) {
    if (o.kld_cmd->parsed()) return eval_kld(o.kld);
    if (o.sweep_cmd->parsed()) return eval_sweep(o.sweep);
    if (o.json_cmd->parsed()) return eval_json(o.json);
    return eval_ppl(o.ppl);
}

}  // namespace sluice::cli
