#include "common.h"

#include <iostream>
#include <thread>

#include "core/error.h"
#include "core/strings.h"

namespace sluice::cli {

void add_model_options(CLI::App* app, ModelOptions& o) {
    app->add_option("-m,--model", o.model, "GGUF file or Hugging Face model directory")->required();
    app->add_option("-t,--threads", o.threads, "CPU threads (default: all)")->check(CLI::Range(0, 1024));
    app->add_option("--experts-per-token", o.experts_per_token, "routed experts per token K (default: the model's)")
        ->check(CLI::Range(1, 1 << 20));
    app->add_flag("--json", o.json, "print one JSON object on stdout");
    app->add_flag("-v,--verbose", o.verbose, "more output on stderr");
}

int resolve_threads(int requested) {
    if (requested > 0) return requested;
    const unsigned hc = std::thread::hardware_concurrency();
    return hc ? (int)hc : 1;
}

LoadedModel open_model(const ModelOptions& o) {
    LoadedModel lm = load_model(o.model);
    if (o.experts_per_token > 0) lm.model->set_experts_per_token(o.experts_per_token);
    return lm;
}

void print_json(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

std::vector<int32_t> parse_ids(const std::string& csv) {
    std::vector<int32_t> ids;
    for (const auto& s : split(csv, ',')) {
        if (s.empty()) continue;
        size_t pos = 0;
        long v = 0;
        try {
            v = std::stol(s, &pos);
        } catch (...) {
            pos = 0;
        }
        check(pos == s.size() && v >= 0 && v <= INT32_MAX, "--prompt-ids: '" + s + "' is not a token id");
        ids.push_back((int32_t)v);
    }
    check(!ids.empty(), "--prompt-ids: no ids given");
    return ids;
}

}  // namespace sluice::cli
