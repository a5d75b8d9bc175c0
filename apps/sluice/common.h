#pragma once
// Options and helpers shared by the subcommands.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/loader.h"

namespace sluice::cli {

struct ModelOptions {
    std::string model;
    int threads = 0;            // 0: all hardware threads
    int experts_per_token = 0;  // 0: the model's own
    bool json = false;
    bool verbose = false;
    std::string mem_budget;     // "" = no budget: everything memory-mapped
    std::string io = "direct";  // measured fastest under a cap: docs/benchmarks.md
    std::string io_engine = "auto";
    unsigned io_depth = 0;
    std::string backend = "cpu";
    std::string gpu_mem;  // "" = the GPU's free memory less 1 GiB
    std::string gpu_misses = "auto";
    bool prefetch = true;  // speculative next-layer prefetch (measured +27%: docs/benchmarks.md)
};

void add_model_options(CLI::App* app, ModelOptions& o);
int resolve_threads(int requested);
// Loads the model and applies --experts-per-token; prints the memory plan unless --json.
// n_ctx: the context the caller will use (sizes the KV cache in the plan).
LoadedModel open_model(const ModelOptions& o, int n_ctx);
nlohmann::json plan_json(const MemoryPlan& p);
nlohmann::json stats_json(const StreamStats& s);
// Prints one JSON object on stdout.
void print_json(const nlohmann::json& j);
std::vector<int32_t> parse_ids(const std::string& csv);

}  // namespace sluice::cli
