// sluice bench: prefill + teacher-forced decode of a fixed token sequence from a text, so
// routing varies per step as in real use, reported against the physical bound.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>

#include "backend/cpu/ops.h"
#include "commands.h"
#include "core/error.h"
#include "core/strings.h"
#include "io/file.h"
#include "io/mapped_file.h"
#include "stream/disk_probe.h"
#include "stream/stats.h"

namespace sluice::cli {
namespace {

// Used when no --text is given: plain English prose, enough tokens for the defaults.
const char* kDefaultText =
    "The river had risen in the night, and by morning the lower fields were under water. Farmers "
    "stood at the edge of the flood and talked about the dam upstream, which had been built before "
    "any of them were born. Some said the engineers had planned for a storm like this one; others "
    "said the gates had not been opened in years and nobody knew whether they still worked. At "
    "noon "
    "a truck came down the valley road with men from the water board, who walked out along the "
    "embankment, measured the level against painted marks on a post, and made telephone calls. "
    "By evening the water had begun to fall. Children threw sticks into the current and watched "
    "them spin away toward the sea, and the old miller said that his grandfather had seen the same "
    "thing in the winter of the great frost, when the ice broke all at once and carried away the "
    "bridge. Nobody believed him, but everybody listened, because the story was better than the "
    "news.";

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Weight bytes one decode step reads: every dense tensor but an untied embedding table (one
// row per token), and K routed experts per MoE layer.
uint64_t weight_bytes_per_token(const Model& m) {
    const Weights& w = m.weights();
    uint64_t touched = m.dense_bytes();
    if (w.output.data != w.tok_embd.data) touched -= w.tok_embd.nbytes();
    for (const ExpertLayerLayout& L : m.expert_layout().layers)
        if (!L.experts.empty()) touched += (uint64_t)m.config().n_expert_used * L.expert_bytes();
    return touched;
}

// The region whose read rate is the memory roofline: the model's own routed-expert bytes
// (resident after the run, and no allocation to fault in), up to `mib` MiB from the first
// expert of the first file. Empty if there is nothing to sweep.
class MemSweep {
  public:
    MemSweep(const Model& m, size_t mib) {
        const ExpertLayout& L = m.expert_layout();
        uint64_t first = UINT64_MAX;
        for (const ExpertLayerLayout& layer : L.layers)
            for (const auto& e : layer.experts)
                for (const ExpertSlice& s : e)
                    if (s.file == 0) first = std::min(first, s.offset);
        if (L.files.empty() || first == UINT64_MAX || mib == 0) return;
        file_.emplace(L.files[0], MappedFile::Paging::Huge);
        p_ = file_->data() + first;
        n_ = std::min<uint64_t>((uint64_t)mib << 20, file_->size() - first);
    }
    bool empty() const { return n_ == 0; }
    uint64_t bytes() const { return n_; }
    // Median of 5 sweeps after one that faults the pages in.
    double bandwidth(ThreadPool& pool) const { return empty() ? 0 : read_bandwidth(pool, p_, n_); }
    // One sweep (the first also faults the pages in).
    double bandwidth_once(ThreadPool& pool) const { return empty() ? 0 : read_rate(pool, p_, n_); }

  private:
    std::optional<MappedFile> file_;
    const uint8_t* p_ = nullptr;
    uint64_t n_ = 0;
};

// Decode steps paired with memory sweeps run between them: step i against the mean of the
// sweeps just before and just after it, so a host whose memory speed drifts between (or
// within) runs is compared with itself.
struct PairedSteps {
    std::vector<double> sweep_bw;    // [n_steps + 1], bytes/s
    std::vector<double> efficiency;  // [n_steps], weight bytes/s of the step over its sweeps'
    double overall = 0;              // all steps' weight bytes/s over the mean of all sweeps
};
PairedSteps pair_steps(std::vector<double> sweep_bw, const std::vector<double>& step_ms,
                       uint64_t weights_per_tok) {
    PairedSteps p{std::move(sweep_bw), {}, 0};
    if (p.sweep_bw.size() != step_ms.size() + 1 || step_ms.empty()) return {};
    double step_s = 0, sweep_sum = p.sweep_bw[0];
    for (size_t i = 0; i < step_ms.size(); ++i) {
        const double beside = (p.sweep_bw[i] + p.sweep_bw[i + 1]) / 2;
        p.efficiency.push_back((double)weights_per_tok / (step_ms[i] / 1000) / beside);
        step_s += step_ms[i] / 1000;
        sweep_sum += p.sweep_bw[i + 1];
    }
    p.overall = (double)weights_per_tok * (double)step_ms.size() / step_s /
                (sweep_sum / (double)p.sweep_bw.size());
    return p;
}

double median_of(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double quantile_of(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[(size_t)std::lround(q * (double)(v.size() - 1))];
}

}  // namespace

void register_bench(CLI::App& app, BenchOptions& o) {
    CLI::App* c = app.add_subcommand(
        "bench", "measure prefill/decode speed, disk traffic and efficiency vs the bound");
    add_model_options(c, o.m);
    c->add_option("--prefill", o.prefill, "prompt tokens processed as one batch (cold)")
        ->check(CLI::Range(1, 1 << 16));
    c->add_option("--decode", o.decode, "decode steps, teacher-forced from the text")
        ->check(CLI::Range(1, 1 << 16));
    c->add_option("--repeat", o.repeat,
                  "after decode, run the prefill N more times on a fresh cache (weights already "
                  "mapped and touched, as llama-bench's warm-up + repetitions) and report their "
                  "median as warm prefill")
        ->check(CLI::Range(0, 1000));
    c->add_option("--text", o.text,
                  "text file the token sequence comes from (default: built-in prose)");
    c->add_option("--probe-experts", o.probe_experts,
                  "random experts read per probe depth to measure disk bandwidth (0: skip)")
        ->check(CLI::Range(0, 100000));
    c->add_option("--probe-depth", o.probe_depth,
                  "reads in flight while probing the disk (0: best of 6, 24, 96)")
        ->check(CLI::Range(0, 4096));
    c->add_option("--probe-mem", o.probe_mem_mib,
                  "MiB of resident weights swept to measure memory bandwidth, CPU without "
                  "--mem-budget (0: skip)")
        ->check(CLI::Range(0, 1 << 20));
    c->add_option("--probe-mem-each", o.probe_mem_each_mib,
                  "MiB swept after every decode step (and once before the first): each step's "
                  "weight bytes/s against the sweeps beside it, CPU without --mem-budget "
                  "(0: off; decode time then excludes the sweeps)")
        ->check(CLI::Range(0, 1 << 20));
}

int cmd_bench(const BenchOptions& o) {
    using clock = std::chrono::steady_clock;
    const int n_ctx = o.prefill + o.decode + 1;
    const auto t_load = clock::now();
    LoadedModel lm = open_model(o.m, n_ctx);
    const double load_s = seconds_since(t_load);
    Model& m = *lm.model;
    const ModelConfig& c = m.config();
    // The token sequence: the text, repeated as needed, ids clamped into the model's vocab.
    std::string text = o.text.empty() ? std::string(kDefaultText) : read_text_file(o.text);
    std::vector<int32_t> seq = lm.tokenizer->encode(text, true, false);
    check(!seq.empty(), "bench: the text gives no tokens");
    while ((int)seq.size() < n_ctx)
        seq.insert(seq.end(), seq.begin(), seq.begin() + std::min(seq.size(), (size_t)n_ctx));
    seq.resize((size_t)n_ctx);
    for (auto& t : seq) t = t % c.n_vocab;

    ThreadPool pool(resolve_threads(o.m.threads));
    KvCache kv(c, n_ctx);
    std::vector<float> logits((size_t)c.n_vocab);
    ExpertStore& store = m.experts();

    DeviceForward* dev = m.device();
    const StreamStats s0 = store.stats();
    const uint64_t d0 = process_disk_read_bytes();
    const auto t0 = clock::now();
    m.forward({seq.data(), o.prefill, 0, &kv, &pool, logits.data(), false});
    const double prefill_s = seconds_since(t0);
    const StreamStats s1 = store.stats();
    const uint64_t d1 = process_disk_read_bytes();

    std::vector<double> step_ms;
    const VramStats v1 = dev ? dev->stats() : VramStats{};
    const BlockDeviceStat b1 = block_device_stat(o.m.model);
    const bool cpu_resident = !dev && o.m.mem_budget.empty();
    const MemSweep each(m, cpu_resident ? (size_t)o.probe_mem_each_mib : 0);
    std::vector<double> sweep_bw;
    if (!each.empty()) {
        each.bandwidth_once(pool);  // faults the region in
        sweep_bw.push_back(each.bandwidth_once(pool));
    }
    const auto t1 = clock::now();
    for (int i = 0; i < o.decode; ++i) {
        const auto ts = clock::now();
        m.forward(
            {&seq[(size_t)(o.prefill + i)], 1, o.prefill + i, &kv, &pool, logits.data(), false});
        step_ms.push_back(1000 * seconds_since(ts));
        if (!each.empty()) sweep_bw.push_back(each.bandwidth_once(pool));
    }
    // With sweeps between the steps, the steps' own time.
    const double decode_s = each.empty()
                                ? seconds_since(t1)
                                : std::accumulate(step_ms.begin(), step_ms.end(), 0.0) / 1000;
    const BlockDeviceStat b2 = block_device_stat(o.m.model);

    // The cold prefill above also pays for first-touch page faults on the mapped weights and
    // for any disk reads; these repetitions measure the compute alone.
    std::vector<double> warm_s;
    for (int i = 0; i < o.repeat; ++i) {
        KvCache kv_rep(c, o.prefill);
        const auto tr = clock::now();
        m.forward({seq.data(), o.prefill, 0, &kv_rep, &pool, logits.data(), false});
        warm_s.push_back(seconds_since(tr));
    }
    std::sort(warm_s.begin(), warm_s.end());
    const double warm_tok_s = warm_s.empty() ? 0 : o.prefill / warm_s[warm_s.size() / 2];
    std::vector<double> warm_tok;
    for (double s : warm_s) warm_tok.push_back(o.prefill / s);
    // How busy decode kept the disk, and how fast it read while busy: a disk busy all the
    // time at less than the probe's figure is the disk's limit under load, not ours.
    const bool busy_known = b1.ok && b2.ok && b2.busy_ms > b1.busy_ms;
    const double disk_busy = busy_known ? (double)(b2.busy_ms - b1.busy_ms) / 1000 / decode_s : 0;
    const double disk_busy_bw = busy_known ? (double)(b2.bytes_read - b1.bytes_read) /
                                                 ((double)(b2.busy_ms - b1.busy_ms) / 1000)
                                           : 0;
    const VramStats v2 = dev ? dev->stats() : VramStats{};
    const StreamStats sd = store.stats() - s1, sp = s1 - s0;
    const uint64_t disk_decode = process_disk_read_bytes() - d1, disk_prefill = d1 - d0;
    const uint64_t peak_rss = process_peak_rss_bytes();

    // The bound uses the best the disk showed: it is the physical limit we compare against.
    DiskProbe probe;
    int probe_depth = o.probe_depth;
    if (o.probe_experts > 0) {
        const std::vector<int> depths =
            o.probe_depth > 0 ? std::vector<int>{o.probe_depth} : std::vector<int>{6, 24, 96};
        for (int d : depths) {
            const DiskProbe p = probe_expert_reads(m.expert_layout(), o.m.io_engine,
                                                   o.probe_experts, (unsigned)d, 42 + (uint64_t)d);
            if (p.bytes_per_s > probe.bytes_per_s) probe = p, probe_depth = d;
        }
    }

    const double median_ms = median_of(step_ms);
    const double decode_tok_s = o.decode / decode_s;
    const double disk_per_tok = (double)disk_decode / o.decode;
    // Compute-only speed: decode time minus time stalled on expert reads (mmap mode faults
    // pages inside compute, so there it is an upper bound on the time, a lower bound on speed).
    const double compute_s = std::max(1e-9, decode_s - sd.io_wait_s);
    const double compute_tok_s = o.decode / compute_s;
    const uint64_t weights_per_tok = weight_bytes_per_token(m);
    const PairedSteps paired = pair_steps(std::move(sweep_bw), step_ms, weights_per_tok);
    const double requested_per_tok = (double)sd.bytes_read / o.decode;
    // The device counters count every process: a few KiB per token of someone else's I/O is
    // no disk bound on a decode served from memory.
    const bool reads_disk = requested_per_tok > 0 || disk_per_tok >= 0.01 * (double)weights_per_tok;
    const double disk_bound = reads_disk && disk_per_tok > 0 && probe.bytes_per_s > 0
                                  ? probe.bytes_per_s / disk_per_tok
                                  : 0;
    double bound = disk_bound > 0 ? std::min(disk_bound, compute_tok_s) : compute_tok_s;
    // Everything resident on the CPU: memory bandwidth is the physical limit.
    const MemSweep mem(m, cpu_resident ? (size_t)o.probe_mem_mib : 0);
    const double mem_bw = mem.bandwidth(pool);
    const double mem_bound = mem_bw > 0 ? mem_bw / (double)weights_per_tok : 0;
    if (mem_bound > 0) bound = mem_bound;
    // GPU: weights touched per token against device memory bandwidth, and expert bytes
    // copied per token against pinned host -> device bandwidth.
    nlohmann::json gpu_j;
    if (dev) {
        const double dev_bw = dev->measure_mem(), h2d_bw = dev->measure_h2d();
        const double h2d_per_tok = (double)(v2.bytes_h2d - v1.bytes_h2d) / o.decode;
        const double dev_bound = dev_bw / (double)weights_per_tok;
        const double h2d_bound = h2d_per_tok > 0 ? h2d_bw / h2d_per_tok : 0;
        bound = dev_bound;
        if (h2d_bound > 0) bound = std::min(bound, h2d_bound);
        if (disk_bound > 0) bound = std::min(bound, disk_bound);
        const uint64_t acq = v2.acquires - v1.acquires, hits = v2.hits - v1.hits;
        gpu_j = {{"device", dev->describe()},
                 {"weight_bytes_per_token", weights_per_tok},
                 {"mem_bw_bytes_per_s", dev_bw},
                 {"mem_bound_tok_s", dev_bound},
                 {"h2d_bytes_per_token", h2d_per_tok},
                 {"h2d_bw_bytes_per_s", h2d_bw},
                 {"h2d_bound_tok_s", h2d_bound},
                 {"vram_hit_rate", acq ? (double)hits / (double)acq : 1.0},
                 {"host_staging_s", v2.host_s - v1.host_s}};
    }
    // Prefill against the disk: the time the measured bandwidth needs for the bytes it read.
    const double prefill_read_s =
        probe.bytes_per_s > 0 ? (double)disk_prefill / probe.bytes_per_s : 0;
    const double page_hit =
        sd.bytes_read > 0 ? std::clamp(1.0 - (double)disk_decode / (double)sd.bytes_read, 0.0, 1.0)
                          : 1.0;

    nlohmann::json j = {
        {"model", o.m.model},
        {"io", store.mode()},
        {"io_depth", store.queue_depth()},
        {"threads", pool.size()},
        {"experts_per_token", c.n_expert_used},
        {"n_layer", c.n_layer},
        {"memory_plan", plan_json(m.memory_plan())},
        {"load_s", load_s},
        {"prefill_tokens", o.prefill},
        {"prefill_tok_s", o.prefill / prefill_s},
        {"first_token_s", prefill_s},
        {"prefill_disk_bytes", disk_prefill},
        {"prefill_read_s", prefill_read_s},
        {"prefill_vs_read", prefill_read_s > 0 ? prefill_s / prefill_read_s : 0},
        {"prefill", stats_json(sp)},
        {"prefill_warm_runs", warm_tok},
        {"prefill_warm_tok_s", warm_tok_s},
        {"decode_tokens", o.decode},
        {"decode_tok_s", decode_tok_s},
        {"decode_ms_median", median_ms},
        {"decode", stats_json(sd)},
        {"disk_bytes_per_token", disk_per_tok},
        {"requested_bytes_per_token", requested_per_tok},
        {"page_cache_hit_rate", page_hit},
        {"disk_bw_bytes_per_s", probe.bytes_per_s},
        {"disk_probe",
         {{"experts", o.probe_experts},
          {"depth", probe_depth},
          {"bytes", probe.bytes},
          {"seconds", probe.seconds}}},
        {"disk_bound_tok_s", disk_bound},
        {"decode_disk_busy_fraction", disk_busy},
        {"decode_disk_busy_bytes_per_s", disk_busy_bw},
        {"compute_only_tok_s", compute_tok_s},
        {"weight_bytes_per_token", weights_per_tok},
        {"weight_bytes_per_s", (double)weights_per_tok * decode_tok_s},
        {"mem_probe", {{"bytes", mem.bytes()}, {"threads", pool.size()}}},
        {"mem_bw_bytes_per_s", mem_bw},
        {"mem_bound_tok_s", mem_bound},
        {"bound_tok_s", bound},
        {"efficiency", bound > 0 ? decode_tok_s / bound : 0},
        {"peak_rss_bytes", peak_rss},
        {"backend", dev ? "cuda" : "cpu"},
    };
    if (dev) j["gpu"] = gpu_j;
    if (!paired.efficiency.empty())
        j["decode_paired"] = {{"sweep_bytes", each.bytes()},
                              {"sweep_bw_bytes_per_s", paired.sweep_bw},
                              {"sweep_bw_median", median_of(paired.sweep_bw)},
                              {"step_efficiency", paired.efficiency},
                              {"step_efficiency_median", median_of(paired.efficiency)},
                              {"efficiency_overall", paired.overall},
                              {"step_efficiency_p10", quantile_of(paired.efficiency, 0.1)},
                              {"step_efficiency_p90", quantile_of(paired.efficiency, 0.9)}};
    if (o.m.json) {
        print_json(j);
        return 0;
    }
    std::printf("model %s | io %s | %d threads | K=%d\n", o.m.model.c_str(), store.mode(),
                pool.size(), c.n_expert_used);
    std::printf("load            %.2f s\n", load_s);
    std::printf(
        "prefill         %d tok in %.2f s = %.2f tok/s (cold first token %.2f s), %s from disk\n",
        o.prefill, prefill_s, o.prefill / prefill_s, prefill_s, format_bytes(disk_prefill).c_str());
    if (!warm_s.empty())
        std::printf("  warm          %.2f tok/s (median of %d repetitions, %.2f-%.2f)\n",
                    warm_tok_s, o.repeat, warm_tok.back(), warm_tok.front());
    if (prefill_read_s > 0)
        std::printf("  vs disk       %.2f s to read that at the measured bandwidth: %.2fx\n",
                    prefill_read_s, prefill_s / prefill_read_s);
    std::printf("decode          %d tok, %.3f tok/s (median %.1f ms/tok)\n", o.decode, decode_tok_s,
                median_ms);
    std::printf(
        "  experts       hit rate %.1f%% (sluice cache), page-cache hit %.1f%%, io wait %.2f s\n",
        100 * sd.hit_rate(), 100 * page_hit, sd.io_wait_s);
    std::printf("  disk          %s/token (requested %s/token)\n",
                format_bytes((uint64_t)disk_per_tok).c_str(),
                format_bytes((uint64_t)requested_per_tok).c_str());
    if (busy_known)
        std::printf(
            "  disk busy     %.0f%% of decode, %.2f GB/s while busy (device counters, all "
            "processes)\n",
            100 * disk_busy, disk_busy_bw / 1e9);
    if (sd.spec_reads)
        std::printf("  prefetch      %llu speculative reads, %.1f%% used\n",
                    (unsigned long long)sd.spec_reads,
                    100.0 * (double)sd.spec_used / (double)sd.spec_reads);
    if (sd.spec2_reads)
        std::printf("  prefetch +2   %llu speculative reads two layers ahead, %.1f%% used\n",
                    (unsigned long long)sd.spec2_reads,
                    100.0 * (double)sd.spec2_used / (double)sd.spec2_reads);
    if (probe.bytes_per_s > 0)
        std::printf("disk bandwidth  %.2f GB/s (%d random experts, O_DIRECT, depth %d)\n",
                    probe.bytes_per_s / 1e9, o.probe_experts, probe_depth);
    std::printf("  weights       %s/token read -> %.2f GB/s\n",
                format_bytes(weights_per_tok).c_str(),
                (double)weights_per_tok * decode_tok_s / 1e9);
    if (mem_bw > 0)
        std::printf("memory          %.2f GB/s read (sweep of %s on %d threads) -> %.3f tok/s\n",
                    mem_bw / 1e9, format_bytes(mem.bytes()).c_str(), pool.size(), mem_bound);
    if (!paired.efficiency.empty())
        std::printf(
            "  paired        steps vs a %s sweep beside each: sweeps %.2f GB/s (median, "
            "%.2f-%.2f); efficiency per step median %.1f%% (p10 %.1f%%, p90 %.1f%%), "
            "all steps %.1f%%\n",
            format_bytes(each.bytes()).c_str(), median_of(paired.sweep_bw) / 1e9,
            quantile_of(paired.sweep_bw, 0) / 1e9, quantile_of(paired.sweep_bw, 1) / 1e9,
            100 * median_of(paired.efficiency), 100 * quantile_of(paired.efficiency, 0.1),
            100 * quantile_of(paired.efficiency, 0.9), 100 * paired.overall);
    if (dev)
        std::printf(
            "gpu             %s  weights %s/token at %.0f GB/s -> %.1f tok/s; host->device "
            "%s/token at %.1f GB/s -> %.1f tok/s; VRAM expert hit rate %.1f%%\n",
            dev->describe().c_str(),
            format_bytes(gpu_j["weight_bytes_per_token"].get<uint64_t>()).c_str(),
            gpu_j["mem_bw_bytes_per_s"].get<double>() / 1e9, gpu_j["mem_bound_tok_s"].get<double>(),
            format_bytes((uint64_t)gpu_j["h2d_bytes_per_token"].get<double>()).c_str(),
            gpu_j["h2d_bw_bytes_per_s"].get<double>() / 1e9, gpu_j["h2d_bound_tok_s"].get<double>(),
            100 * gpu_j["vram_hit_rate"].get<double>());
    // Only the limits that were measured (0: not measured, or no bytes of that kind).
    std::printf("bound           %.3f tok/s (", bound);
    if (mem_bound > 0) std::printf("memory %.3f, ", mem_bound);
    if (disk_bound > 0) std::printf("disk %.3f, ", disk_bound);
    std::printf("compute-only %.3f) -> efficiency %.1f%%\n", compute_tok_s,
                bound > 0 ? 100 * decode_tok_s / bound : 0.0);
    std::printf("peak RSS        %s\n", format_bytes(peak_rss).c_str());
    return 0;
}

}  // namespace sluice::cli
