// Bad input reaches the user as a clear message and a non-zero exit, never a crash.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

struct Result {
    int status = -1;
    bool signaled = false;
    std::string out;
};

Result run(const std::string& args) {
    Result r;
    const std::string cmd = std::string(SLUICE_BIN) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int st = pclose(p);
    r.signaled = WIFSIGNALED(st);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

void expect_error(const std::string& args, const std::string& needle) {
    const Result r = run(args);
    EXPECT_FALSE(r.signaled) << args << "\n" << r.out;
    EXPECT_NE(r.status, 0) << args << "\n" << r.out;
    EXPECT_NE(r.status, -1) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos)
        << "wanted '" << needle << "' from: " << args << "\n"
        << r.out;
    EXPECT_EQ(r.out.find("AddressSanitizer"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("runtime error"), std::string::npos) << r.out;
}

class CliErrors : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { dir_ = new fs::path(test::temp_dir("cli")); }
    static void TearDownTestSuite() {
        fs::remove_all(*dir_);
        delete dir_;
    }
    static std::string path(const std::string& name) { return (*dir_ / name).string(); }

    // Rewrites the tiny Q2_K model, letting `edit` change metadata and tensors.
    static std::string rewrite(
        const std::string& name,
        const std::function<bool(GGUFWriter&, const TensorInfo&, const TensorView&)>& tensor_hook,
        const std::function<void(GGUFWriter&)>& meta_hook = {}) {
        const GGUFFile g = read_gguf(test::tiny_gguf("Q2_K"));
        static TensorFiles* files = nullptr;
        static std::string files_for;
        if (!files) files = new TensorFiles(g.index);
        GGUFWriter w;
        w.copy_meta(g);
        if (meta_hook) meta_hook(w);
        for (const auto& t : g.index.tensors) {
            const TensorView v = files->view(t);
            if (tensor_hook && tensor_hook(w, t, v)) continue;
            w.add_tensor(t.name, t.dtype, t.ne, v.data);
        }
        const std::string out = path(name);
        w.write(out);
        return out;
    }

    // Overwrites the dtype (or offset) field of a tensor's info in a GGUF file.
    static void patch_tensor_info(const std::string& file, const std::string& tensor, bool offset,
                                  uint64_t value) {
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(f)), {});
        std::string key(8, '\0');
        const uint64_t len = tensor.size();
        std::memcpy(key.data(), &len, 8);
        key += tensor;
        const size_t at = bytes.find(key);
        ASSERT_NE(at, std::string::npos);
        size_t p = at + key.size();
        uint32_t nd;
        std::memcpy(&nd, bytes.data() + p, 4);
        p += 4 + 8 * nd;
        f.seekp((std::streamoff)(offset ? p + 4 : p));
        if (offset)
            f.write((const char*)&value, 8);
        else {
            const uint32_t v32 = (uint32_t)value;
            f.write((const char*)&v32, 4);
        }
    }

    static fs::path* dir_;
};
fs::path* CliErrors::dir_;

TEST_F(CliErrors, MissingFile) {
    expect_error("run -m " + path("nope.gguf") + " -p hi", "no such file");
}

TEST_F(CliErrors, NotAGguf) {
    std::ofstream(path("text.gguf")) << "this is not a model file at all\n";
    expect_error("run -m " + path("text.gguf") + " -p hi", "not a GGUF file");
}

TEST_F(CliErrors, TruncatedGguf) {
    const std::string src = test::tiny_gguf("Q2_K");
    for (uintmax_t cut : {(uintmax_t)10, (uintmax_t)5000, fs::file_size(src) / 2}) {
        fs::copy_file(src, path("trunc.gguf"), fs::copy_options::overwrite_existing);
        fs::resize_file(path("trunc.gguf"), cut);
        expect_error("run -m " + path("trunc.gguf") + " -p hi", "truncated");
    }
}

TEST_F(CliErrors, TensorOffsetBeyondFile) {
    const std::string f = rewrite("offset.gguf", {});
    patch_tensor_info(f, "blk.2.attn_v.weight", true, 1ull << 40);
    expect_error("run -m " + f + " -p hi", "blk.2.attn_v.weight");
    expect_error("run -m " + f + " -p hi", "beyond the end of the file");
}

TEST_F(CliErrors, UnknownDtype) {
    const std::string f = rewrite("dtype.gguf", {});
    patch_tensor_info(f, "blk.1.attn_q.weight", false, 77);
    expect_error("run -m " + f + " -p hi", "unknown or unsupported dtype id 77");
}

TEST_F(CliErrors, UnknownArchitecture) {
    const std::string f = rewrite(
        "arch.gguf", {}, [](GGUFWriter& w) { w.set_str("general.architecture", "mamba9"); });
    expect_error("run -m " + f + " -p hi", "unknown architecture 'mamba9'");
}

TEST_F(CliErrors, MissingTensor) {
    const std::string f =
        rewrite("missing.gguf", [](GGUFWriter&, const TensorInfo& t, const TensorView&) {
            return t.name == "blk.3.attn_q.weight";
        });
    expect_error("run -m " + f + " -p hi", "missing tensor 'blk.3.attn_q.weight'");
}

TEST_F(CliErrors, ShapeMismatch) {
    const std::string f =
        rewrite("shape.gguf", [](GGUFWriter& w, const TensorInfo& t, const TensorView& v) {
            if (t.name != "blk.0.attn_k.weight") return false;
            w.add_tensor(t.name, t.dtype, {t.ne[0], t.ne[1] / 2}, v.data);
            return true;
        });
    expect_error("run -m " + f + " -p hi",
                 "'blk.0.attn_k.weight' has shape [256, 64], expected [256, 128]");
}

TEST_F(CliErrors, HfDirectoryWithoutConfig) {
    fs::create_directories(path("emptyhf"));
    expect_error("run -m " + path("emptyhf") + " -p hi", "config.json");
}

TEST_F(CliErrors, NonUtf8Prompt) {
    expect_error("run -m " + test::tiny_gguf("Q2_K") + " -p \"$(printf '\\377\\376abc')\"",
                 "not valid UTF-8");
}

TEST_F(CliErrors, PromptLongerThanContext) {
    expect_error("run -m " + test::tiny_gguf("Q2_K") +
                     " --ctx 8 -p 'one two three four five six seven eight nine ten'",
                 "prompt too long");
}

TEST_F(CliErrors, TokenIdOutsideVocabulary) {
    expect_error("run -m " + test::tiny_gguf("Q2_K") + " --prompt-ids 1,99999",
                 "outside the vocabulary");
    expect_error("run -m " + test::tiny_gguf("Q2_K") + " --prompt-ids 1,x", "not a token id");
}

TEST_F(CliErrors, ExpertsPerTokenOutOfRange) {
    expect_error("run -m " + test::tiny_gguf("Q2_K") + " --experts-per-token 33 -p hi",
                 "outside 1..32");
}

TEST_F(CliErrors, PerplexityTextTooShort) {
    std::ofstream(path("short.txt")) << "just a few words";
    expect_error("eval ppl -m " + test::tiny_gguf("Q2_K") + " -f " + path("short.txt"),
                 "needs at least");
}

TEST(Cli, RunJsonHasTheDocumentedFields) {
    const Result r = run("run -m " + test::tiny_gguf("Q8_0") +
                         " --prompt-ids 1,2,3 -n 4 --temp 0 --json 2>/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    for (const char* k : {"\"tokens\"", "\"text\"", "\"prefill_tok_s\"", "\"decode_tok_s\""})
        EXPECT_NE(r.out.find(k), std::string::npos) << k << " in " << r.out;
}

TEST(Cli, ChatAnswersAndHandlesCommands) {
    const Result s = run("chat -m " + test::tiny_gguf("Q8_0") +
                         " -n 8 --temp 0 2>&1 <<'EOF'\nHello\n/stats\n/reset\n/exit\nEOF\n");
    ASSERT_EQ(s.status, 0) << s.out;
    EXPECT_NE(s.out.find("decode"), std::string::npos) << s.out;
    EXPECT_NE(s.out.find("history cleared"), std::string::npos) << s.out;
}

TEST(Cli, SeededSamplingIsReproducible) {
    const std::string a = "run -m " + test::tiny_gguf("Q8_0") +
                          " -p 'Once upon' -n 16 --temp 1.0 --top-k 0 --top-p 1 --min-p 0 --json";
    const Result r1 = run(a + " --seed 7 2>/dev/null"), r2 = run(a + " --seed 7 2>/dev/null"),
                 r3 = run(a + " --seed 8 2>/dev/null");
    ASSERT_EQ(r1.status, 0);
    EXPECT_EQ(r1.out.substr(r1.out.find("\"tokens\"")), r2.out.substr(r2.out.find("\"tokens\"")));
    EXPECT_NE(r1.out.substr(r1.out.find("\"tokens\"")), r3.out.substr(r3.out.find("\"tokens\"")));
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST(Cli, EvalJsonCountsParseableReplies) {
    const Result r =
        run("eval json -m " + test::tiny_gguf("Q8_0") + " --limit 2 -n 8 --json 2>/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["prompts"], 2);
    EXPECT_EQ(j["rows"].size(), 2u);
    EXPECT_LE(j["parsed"].get<int>(), 2);
}

TEST(Cli, QuantizeWritesALoadableFileAndRejectsBadTypes) {
    const std::string out = (test::temp_dir("cli-quantize") / "q.gguf").string();
    const Result q =
        run("quantize -m " + test::tiny_gguf("Q8_0") + " -o " + out + " --experts Q4_K -q 2>&1");
    ASSERT_EQ(q.status, 0) << q.out;
    const Result g = run("run -m " + out + " --prompt-ids 1,2,3 -n 2 --temp 0 2>&1");
    EXPECT_EQ(g.status, 0) << g.out;
    const Result bad =
        run("quantize -m " + test::tiny_gguf("Q8_0") + " -o " + out + " --experts Q9_X 2>&1");
    EXPECT_NE(bad.status, 0);
    EXPECT_NE(bad.out.find("not a weight type"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// Streaming telemetry per phase: -v prints the prompt and every decode step with its time,
// the part stalled on reads and its own expert traffic; --json has the phase totals.
TEST(Cli, VerboseRunReportsEachPhase) {
#if defined(__SANITIZE_ADDRESS__)
    const char* budget = "136MiB";  // the ASan runtime holds ~65 MB at start
#else
    const char* budget = "40MiB";
#endif
    const std::string args = "run -m " + test::tiny_gguf("Q4_K_M") + " --mem-budget " + budget +
                             " --ctx 64 --io direct -p 'The river' -n 3 --temp 0";
    const Result v = run(args + " -v");
    ASSERT_EQ(v.status, 0) << v.out;
    for (const char* line : {"[prompt] ", "[token 0] ", "[token 1] "})
        EXPECT_NE(v.out.find(line), std::string::npos) << line << "\n" << v.out;
    EXPECT_NE(v.out.find("(compute "), std::string::npos) << v.out;
    const size_t prompt = v.out.find("[prompt] ");
    ASSERT_NE(prompt, std::string::npos);
    EXPECT_NE(v.out.find("read ", prompt), std::string::npos) << "the prompt read its experts";
    const Result j = run(args + " --json 2>/dev/null");
    ASSERT_EQ(j.status, 0) << j.out;
    const auto o = nlohmann::json::parse(j.out);
    EXPECT_GT(o["prefill_ms"].get<double>(), 0.0) << o;
    EXPECT_GT(o["decode_ms"].get<double>(), 0.0) << o;
    EXPECT_GT(o["streaming"]["bytes_read"].get<uint64_t>(), 0u) << "the budget forces reads";
}

// `sluice bench --json` on the tiny Q8_0 model with `args` (no disk probe); a failed run fails
// the test and gives null.
nlohmann::json bench_json(const std::string& args) {
    const Result r = run("bench -m " + test::tiny_gguf("Q8_0") + " --probe-experts 0 --json " +
                         args + " 2>/dev/null");
    EXPECT_EQ(r.status, 0) << r.out;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
}

// Warm prefill repetitions (llama-bench's way of timing a prompt): one run each, on a fresh
// cache, none slower than a tenth of the cold one (which also faults the mapped weights in).
TEST(Cli, BenchRepeatsThePrefillWarm) {
    const auto j = bench_json("--prefill 8 --decode 2 --repeat 3 --probe-mem 0");
    ASSERT_FALSE(j.is_null());
    const auto& runs = j["prefill_warm_runs"];
    ASSERT_EQ(runs.size(), 3u) << j;
    for (const auto& v : runs) EXPECT_GT(v.get<double>(), 0.1 * j["prefill_tok_s"].get<double>());
    EXPECT_EQ(j["prefill_warm_tok_s"].get<double>(), runs[1].get<double>()) << "the median";
}

// Each decode step is paired with the memory sweeps either side of it: one sweep more than
// steps, an efficiency per step, and the whole decode's weight traffic against the sweeps'
// mean (the decode time then counts the steps only, not the sweeps between them).
TEST(Cli, BenchPairsDecodeStepsWithMemorySweeps) {
    const auto j = bench_json("--prefill 4 --decode 5 --probe-mem 1 --probe-mem-each 1");
    ASSERT_FALSE(j.is_null());
    const auto& p = j["decode_paired"];
    ASSERT_EQ(p["sweep_bw_bytes_per_s"].size(), 6u) << p;
    ASSERT_EQ(p["step_efficiency"].size(), 5u) << p;
    double mean_bw = 0;
    for (const auto& b : p["sweep_bw_bytes_per_s"]) {
        EXPECT_GT(b.get<double>(), 1e8) << p;
        mean_bw += b.get<double>() / 6;
    }
    for (const auto& e : p["step_efficiency"]) EXPECT_GT(e.get<double>(), 0.0) << p;
    EXPECT_NEAR(p["efficiency_overall"].get<double>(),
                j["weight_bytes_per_s"].get<double>() / mean_bw,
                1e-9 * p["efficiency_overall"].get<double>());
    EXPECT_EQ(p["sweep_bytes"].get<uint64_t>(), j["mem_probe"]["bytes"].get<uint64_t>());

    const auto plain = bench_json("--prefill 4 --decode 2 --probe-mem 0");
    ASSERT_FALSE(plain.is_null());
    EXPECT_FALSE(plain.contains("decode_paired"));
}

// The budget covers everything the process holds: the plan counts the process's own memory
// (binary, libraries) and the run's peak RSS stays below the budget.
TEST(Cli, StreamingBenchStaysWithinTheMemoryBudget) {
#if defined(__SANITIZE_ADDRESS__)
    const uint64_t budget = 136ull << 20;  // the ASan runtime holds ~65 MB at start
#else
    const uint64_t budget = 40ull << 20;
#endif
    const Result r =
        run("bench -m " + test::tiny_gguf("Q4_K_M") + " --mem-budget " + std::to_string(budget) +
            " --io direct --prefill 16 --decode 8 --probe-experts 0 --json 2>/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    const auto& p = j["memory_plan"];
    EXPECT_GT(p["process"].get<uint64_t>(), 1ull << 20) << p;
    uint64_t planned = 0;
    for (const char* k : {"process", "dense", "kv_cache", "recurrent_state", "scratch",
                          "io_buffers", "expert_cache", "page_cache"})
        planned += p[k].get<uint64_t>();
    EXPECT_LE(planned, budget) << p;
    EXPECT_LT(j["decode"]["hit_rate"].get<double>(), 1.0) << "the budget must force misses";
    // Device busy time (0 where the file has no block device): a fraction of the decode time,
    // whose misses did read from the device.
    // The device counts busy time in whole ticks (1 ms, or a jiffy: up to 4 ms), so each of the
    // two readings around a decode of a few milliseconds can be one tick off.
    const double busy = j["decode_disk_busy_fraction"].get<double>();
    const double decode_s = j["decode_tokens"].get<double>() / j["decode_tok_s"].get<double>();
    EXPECT_GE(busy, 0.0);
    EXPECT_LE(busy, 1.0 + 0.008 / decode_s)
        << "busy time is part of the decode time (tick rounding aside); decode " << decode_s
        << " s";
    if (busy > 0) {
        EXPECT_GT(j["decode_disk_busy_bytes_per_s"].get<double>(), 0.0);
    }
#if !defined(__SANITIZE_ADDRESS__)  // ASan's shadow and quarantine are not the program's memory
    EXPECT_LE(j["peak_rss_bytes"].get<uint64_t>(), budget) << r.out;
#endif
}

}  // namespace
}  // namespace sluice
