#include "common.h"

#include <unistd.h>

#include <iostream>
#include <thread>

#include "core/error.h"
#include "core/strings.h"
#include "stream/expert_store.h"
#include "stream/stats.h"

namespace sluice::cli {

void add_model_options(CLI::App* app, ModelOptions& o) {
    app->add_option("-m,--model", o.model, "GGUF file or Hugging Face model directory")->required();
    app->add_option("-t,--threads", o.threads, "CPU threads (default: all)")
        ->check(CLI::Range(0, 1024));
    app->add_option("--experts-per-token", o.experts_per_token,
                    "routed experts per token K (default: the model's)")
        ->check(CLI::Range(1, 1 << 20));
    app->add_flag("--json", o.json, "print one JSON object on stdout");
    app->add_flag("-v,--verbose", o.verbose,
                  "more output on stderr (per-token streaming telemetry)");
    app->add_option(
        "--mem-budget", o.mem_budget,
        "most RAM for the process (program, weights, caches, buffers), e.g. 6GiB; routed experts "
        "stream from the file");
    app->add_option(
           "--io", o.io,
           "expert I/O with --mem-budget: direct (O_DIRECT + own cache, default), page-cache, mmap")
        ->check(CLI::IsMember({"page-cache", "direct", "mmap"}));
    app->add_option("--io-engine", o.io_engine, "auto (io_uring if available), uring, threads")
        ->check(CLI::IsMember({"auto", "uring", "threads"}));
    app->add_option("--io-depth", o.io_depth,
                    "expert reads in flight (default: 3/4 of the disk's request queue, <= 256)")
        ->check(CLI::Range(1, 4096));
    app->add_option("--backend", o.backend, "compute on: cpu (default) or cuda")
        ->check(CLI::IsMember({"cpu", "cuda"}));
    app->add_option("--gpu-mem", o.gpu_mem,
                    "with --backend cuda: most VRAM to use, e.g. 4GiB; routed experts beyond it "
                    "are cached in VRAM and copied from host memory as routed");
    app->add_option("--gpu-misses", o.gpu_misses,
                    "with --backend cuda: experts not in VRAM are copied to the GPU (copy) or "
                    "computed on the CPU (cpu); auto: cpu when they come from the page cache")
        ->check(CLI::IsMember({"auto", "copy", "cpu"}));
    app->add_flag("--prefetch,!--no-prefetch", o.prefetch,
                  "speculatively prefetch the next layers' experts");
}

int resolve_threads(int requested) {
    if (requested > 0) return requested;
    const unsigned hc = std::thread::hardware_concurrency();
    return hc ? (int)hc : 1;
}

LoadedModel open_model(const ModelOptions& o, int n_ctx) {
    LoadOptions lo;
    lo.mem_budget = o.mem_budget.empty() ? 0 : parse_size(o.mem_budget);
    lo.io = parse_io_mode(o.io);
    lo.io_engine = o.io_engine;
    lo.io_depth = o.io_depth;
    lo.backend = o.backend == "cuda" ? Backend::Cuda : Backend::Cpu;
    lo.gpu_mem = o.gpu_mem.empty() ? 0 : parse_size(o.gpu_mem);
    lo.gpu_misses = o.gpu_misses == "cpu"    ? GpuMisses::Cpu
                    : o.gpu_misses == "copy" ? GpuMisses::Copy
                                             : GpuMisses::Auto;
    lo.n_ctx = n_ctx;
    if (lo.mem_budget > 0) lo.process_bytes = process_rss_bytes();
    if (!o.json && isatty(2))
        lo.on_progress = [](uint64_t done, uint64_t total) {
            const int w = 40, fill = total ? (int)(w * done / total) : w;
            std::fprintf(stderr, "\rloading [%s%s] %3d%%%s", std::string((size_t)fill, '#').c_str(),
                         std::string((size_t)(w - fill), '.').c_str(),
                         total ? (int)(100 * done / total) : 100, done == total ? "\n" : "");
        };
    LoadedModel lm = load_model(o.model, lo);
    if (o.experts_per_token > 0) lm.model->set_experts_per_token(o.experts_per_token);
    lm.model->set_speculative_prefetch(o.prefetch);
    if (!o.json && lo.mem_budget > 0)
        std::fprintf(stderr, "%s", lm.model->memory_plan().describe().c_str());
    if (!o.json && lm.model->device())
        std::fprintf(stderr, "%s", lm.model->device()->describe().c_str());
    return lm;
}

nlohmann::json plan_json(const MemoryPlan& p) {
    return {{"budget", p.budget},
            {"mode", io_mode_name(p.mode)},
            {"process", p.process},
            {"dense", p.dense},
            {"kv_cache", p.kv_cache},
            {"recurrent_state", p.recurrent_state},
            {"scratch", p.scratch},
            {"io_buffers", p.io_buffers},
            {"expert_cache", p.expert_cache},
            {"page_cache", p.page_cache},
            {"experts_total", p.experts_total},
            {"cached_fraction", p.cached_fraction()}};
}

nlohmann::json stats_json(const StreamStats& s) {
    return {{"experts_acquired", s.acquires},     {"cache_hits", s.hits},
            {"cache_misses", s.misses},           {"hit_rate", s.hit_rate()},
            {"bytes_read", s.bytes_read},         {"bytes_served", s.bytes_served},
            {"io_wait_s", s.io_wait_s},           {"spec_prefetch_reads", s.spec_reads},
            {"spec_prefetch_used", s.spec_used},  {"spec2_prefetch_reads", s.spec2_reads},
            {"spec2_prefetch_used", s.spec2_used}};
}

void print_json(const nlohmann::json& j) {
    std::cout << j.dump() << std::endl;
}

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
        check(pos == s.size() && v >= 0 && v <= INT32_MAX,
              "--prompt-ids: '" + s + "' is not a token id");
        ids.push_back((int32_t)v);
    }
    check(!ids.empty(), "--prompt-ids: no ids given");
    return ids;
}

}  // namespace sluice::cli
