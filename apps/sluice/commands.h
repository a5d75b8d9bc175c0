#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "common.h"

namespace sluice::cli {

struct RunOptions {
    ModelOptions m;
    std::string prompt;
    std::string prompt_ids;
    int n_predict = 64;
    int ctx = 0;
    float temp = 0.8f;
    int top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    float repeat_penalty = 1.0f;
    uint64_t seed = 0xC0FFEE;
    bool ignore_eos = false;
};
void register_run(CLI::App& app, RunOptions& o);
int cmd_run(const RunOptions& o);

struct EvalPplOptions {
    ModelOptions m;
    std::string file;
    int ctx = 256;
    int chunks = -1;
};
struct EvalKldOptions {
    EvalPplOptions e;  // model under test, text, windows
    std::string base;  // model path or saved logits
    std::string save_logits;
    int top_k = 64;
};
struct EvalSweepOptions {
    std::vector<std::string> models;  // the first, at its trained K, is the base
    std::string ks;                   // e.g. "1,2,4,8" (default: 1..trained K and 2x)
    std::string file;
    int ctx = 256;
    int chunks = -1;
    int threads = 0;
    bool json = false;
};
struct EvalJsonOptions {
    ModelOptions m;
    std::string prompts;  // default: data/eval/json_prompts.jsonl of this checkout
    std::string system = "You are a helpful assistant. Reply with JSON only: no prose, no comments.";
    int n_predict = 256;
    int limit = 0;  // 0: every prompt
};
int eval_json(const EvalJsonOptions& o);  // cmd_eval_json.cpp
struct EvalOptions {
    EvalPplOptions ppl;
    EvalKldOptions kld;
    EvalSweepOptions sweep;
    EvalJsonOptions json;
    CLI::App *ppl_cmd = nullptr, *kld_cmd = nullptr, *sweep_cmd = nullptr, *json_cmd = nullptr;
};
void register_eval(CLI::App& app, EvalOptions& o);
int cmd_eval(const EvalOptions& o);

struct BenchOptions {
    ModelOptions m;
    int prefill = 16;
    int decode = 32;
    int repeat = 0;  // warm prefills after the decode, on a fresh cache each
    std::string text;
    int probe_experts = 400;
    int probe_depth = 0;  // 0: best of several depths
    int probe_mem_mib = 2048;
    int probe_mem_each_mib = 0;
};
void register_bench(CLI::App& app, BenchOptions& o);
int cmd_bench(const BenchOptions& o);

struct ServeOptions {
    ModelOptions m;
    std::string host = "127.0.0.1";
    int port = 8080;
    int ctx = 4096;
    int max_tokens = 4096;
    int64_t max_body = 1 << 20;
};
void register_serve(CLI::App& app, ServeOptions& o);
int cmd_serve(const ServeOptions& o);

struct ChatOptions {
    ModelOptions m;
    int ctx = 4096;
    int n_predict = 512;
    float temp = 0.7f;
    std::string system;
    uint64_t seed = 42;
};
void register_chat(CLI::App& app, ChatOptions& o);
int cmd_chat(const ChatOptions& o);

struct ConvertOptions {
    std::string in, out;
    std::string type;  // convert: every matrix (bf16, f16, f32, q8_0, ...); empty: as stored
    std::string experts, dense, embd, output;  // quantize
    int threads = 0;
    bool quiet = false;
    CLI::App *convert_cmd = nullptr, *quantize_cmd = nullptr;
};
void register_convert(CLI::App& app, ConvertOptions& o);
int cmd_convert(const ConvertOptions& o);

}  // namespace sluice::cli
