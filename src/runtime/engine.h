#pragma once
// One model shared by many clients: requests are served one at a time, first come first
// served, on one dedicated thread (so per-thread buffers and malloc arenas do not multiply
// with the number of clients), and counted for /metrics.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/generate.h"
#include "runtime/loader.h"
#include "tokenizer/chat_template.h"

namespace sluice {

struct EngineMetrics {
    uint64_t requests = 0;
    uint64_t prompt_tokens = 0;
    uint64_t generated_tokens = 0;
    uint64_t cancelled = 0;
    double decode_seconds = 0;
    double prefill_seconds = 0;
    double last_decode_tok_s = 0;
    StreamStats experts;  // cumulative expert-store telemetry
    uint64_t disk_read_bytes = 0;
};

class Engine {
  public:
    Engine(LoadedModel& lm, ThreadPool& pool, int n_ctx);
    ~Engine();

    const Tokenizer& tokenizer() const { return *lm_.tokenizer; }
    const ModelConfig& config() const { return lm_.model->config(); }
    int n_ctx() const { return n_ctx_; }
    ChatStyle chat_style() const { return style_; }
    bool chat_template_known() const { return template_known_; }
    std::string render(const std::vector<ChatMessage>& msgs, const ChatRenderOptions& o = {}) const;

    // Queues the request (FIFO) and blocks until the engine thread has run it; on_text and
    // p.cancelled are called on the engine thread. p.n_ctx and p.kv are set by the engine.
    GenerateResult generate(const std::vector<int32_t>& prompt, GenerateParams p,
                            const std::function<void(const std::string&)>& on_text);
    EngineMetrics metrics() const;

  private:
    LoadedModel& lm_;
    ThreadPool& pool_;
    int n_ctx_;
    ChatStyle style_ = ChatStyle::ChatML;
    bool template_known_ = false;
    void loop();

    KvCache kv_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    EngineMetrics m_;
    std::thread thread_;  // last: starts after everything above exists
};

}  // namespace sluice
