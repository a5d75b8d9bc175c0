#include "runtime/engine.h"

#include <filesystem>

#include "io/mapped_file.h"

namespace sluice {

Engine::Engine(LoadedModel& lm, ThreadPool& pool, int n_ctx)
    : lm_(lm), pool_(pool), n_ctx_(n_ctx), kv_(lm.model->config(), n_ctx), thread_([this] {
          loop();
      }) {
    std::string tmpl;
    if (const GGUFFile* g = lm.model->gguf()) {
        tmpl = g->get_string("tokenizer.chat_template").value_or("");
    } else {
        const auto p = std::filesystem::path(lm.model->path()) / "chat_template.jinja";
        if (std::filesystem::exists(p)) tmpl = read_text_file(p.string());
    }
    if (auto s = detect_chat_style(tmpl)) {
        style_ = *s;
        template_known_ = true;
    }
}

std::string Engine::render(const std::vector<ChatMessage>& msgs, const ChatRenderOptions& o) const {
    return render_chat(style_, msgs, o);
}

Engine::~Engine() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void Engine::loop() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        job();
    }
}

GenerateResult Engine::generate(const std::vector<int32_t>& prompt, GenerateParams p,
                                const std::function<void(const std::string&)>& on_text) {
    p.n_ctx = n_ctx_;
    p.kv = &kv_;
    GenerateResult r;
    std::exception_ptr err;
    bool done = false;
    std::condition_variable cv_done;
    auto job = [&] {
        try {
            const uint64_t d0 = process_disk_read_bytes();
            r = sluice::generate(*lm_.model, *lm_.tokenizer, pool_, prompt, p, on_text);
            std::lock_guard<std::mutex> g(mu_);
            m_.requests++;
            m_.prompt_tokens += (uint64_t)r.n_prompt;
            m_.generated_tokens += r.tokens.size();
            m_.cancelled += r.stop_reason == "cancelled";
            m_.prefill_seconds += r.prefill_s;
            m_.decode_seconds += r.decode_s;
            if (r.decode_tok_s() > 0) m_.last_decode_tok_s = r.decode_tok_s();
            m_.experts = lm_.model->experts().stats();
            m_.disk_read_bytes += process_disk_read_bytes() - d0;
        } catch (...) {
            err = std::current_exception();
        }
        std::lock_guard<std::mutex> g(mu_);
        done = true;
        cv_done.notify_all();
    };
    std::unique_lock<std::mutex> lk(mu_);
    jobs_.push_back(job);
    cv_.notify_all();
    cv_done.wait(lk, [&] { return done; });
    lk.unlock();
    if (err) std::rethrow_exception(err);
    return r;
}

EngineMetrics Engine::metrics() const {
    std::lock_guard<std::mutex> lk(mu_);
    return m_;
}

}  // namespace sluice
