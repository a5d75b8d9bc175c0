// sluice eval json: greedy replies to prompts that ask for JSON; the share that parses (and
// has the asked-for keys). For judging low-bit experts or a smaller K on a real chat model.
#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "commands.h"
#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/json_reply.h"

namespace sluice::cli {
namespace {

std::string default_prompts() {
    namespace fs = std::filesystem;
    const std::string rel = "data/eval/json_prompts.jsonl";
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {  // build/sluice -> <checkout>/data/...
        const fs::path p = fs::path(std::string(buf, (size_t)n)).parent_path().parent_path() / rel;
        if (fs::exists(p)) return p.string();
    }
    return rel;
}

}  // namespace

int eval_json(const EvalJsonOptions& o) {
    const std::vector<JsonPrompt> prompts =
        read_json_prompts(o.prompts.empty() ? default_prompts() : o.prompts);
    const size_t n = o.limit > 0 ? std::min(prompts.size(), (size_t)o.limit) : prompts.size();
    const int n_ctx = 2048;
    LoadedModel lm = open_model(o.m, n_ctx);
    ThreadPool pool(resolve_threads(o.m.threads));
    Engine engine(lm, pool, n_ctx);
    if (!engine.chat_template_known() && !o.m.json)
        std::fprintf(stderr, "note: no known chat template in the model; using ChatML\n");
    int parsed = 0, keyed = 0;
    nlohmann::json rows = nlohmann::json::array();
    for (size_t i = 0; i < n; ++i) {
        const JsonPrompt& p = prompts[i];
        const std::vector<int32_t> ids = engine.tokenizer().encode(
            engine.render({{"system", o.system}, {"user", p.prompt}}), false, true);
        check((int)ids.size() < n_ctx, "prompt " + std::to_string(i + 1) + " does not fit the context");
        GenerateParams gp;
        gp.n_predict = std::min(o.n_predict, n_ctx - (int)ids.size());
        gp.sampling.temp = 0;  // greedy: the result is a property of the weights
        const GenerateResult r = engine.generate(ids, gp, {});
        const auto j = parse_json_reply(r.text);
        bool has_keys = j.has_value();
        if (j && !p.keys.empty()) {
            has_keys = j->is_object();
            for (const auto& k : p.keys) has_keys = has_keys && j->contains(k);
        }
        parsed += j.has_value();
        keyed += has_keys;
        rows.push_back({{"prompt", i + 1}, {"parsed", j.has_value()}, {"keys_ok", has_keys},
                        {"tokens", r.tokens.size()}, {"stop", r.stop_reason}, {"reply", r.text}});
        if (!o.m.json) {
            std::string head = r.text.substr(0, 60);
            for (char& c : head)
                if (c == '\n' || c == '\r' || c == '\t') c = ' ';
            std::printf("%3zu  %-6s %-8s %s\n", i + 1, j ? "json" : "-", has_keys ? "keys ok" : "",
                        head.c_str());
            std::fflush(stdout);
        }
    }
    const double share = n ? (double)parsed / (double)n : 0, key_share = n ? (double)keyed / (double)n : 0;
    if (o.m.json) {
        print_json({{"model", o.m.model},
                    {"prompts", n},
                    {"parsed", parsed},
                    {"parsed_share", share},
                    {"keys_ok", keyed},
                    {"keys_ok_share", key_share},
                    {"experts_per_token", lm.model->config().n_expert_used},
                    {"rows", rows}});
    } else {
        std::printf("parseable JSON: %d / %zu (%.1f%%); with the asked-for keys: %d (%.1f%%)\n",
                    parsed, n, 100 * share, keyed, 100 * key_share);
    }
    return 0;
}

}  // namespace sluice::cli
