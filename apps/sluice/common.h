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
};

void add_model_options(CLI::App* app, ModelOptions& o);
int resolve_threads(int requested);
// Loads the model and applies --experts-per-token.
LoadedModel open_model(const ModelOptions& o);
// Prints one JSON object on stdout.
void print_json(const nlohmann::json& j);
std::vector<int32_t> parse_ids(const std::string& csv);

}  // namespace sluice::cli
