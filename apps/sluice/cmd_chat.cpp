// Interactive terminal chat: streaming answers, history, /reset, /stats, Ctrl-C stops the
// current answer and returns to the prompt.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "core/error.h"
#include "core/strings.h"
#include "runtime/engine.h"

namespace sluice::cli {
namespace {
std::atomic<bool> g_interrupt{false};
void on_sigint(int) {
    g_interrupt = true;
}
}  // namespace

void register_chat(CLI::App& app, ChatOptions& o) {
    CLI::App* c = app.add_subcommand("chat", "interactive chat in the terminal");
    add_model_options(c, o.m);
    c->add_option("--ctx", o.ctx, "context size")->check(CLI::Range(16, 1 << 20));
    c->add_option("-n,--n-predict", o.n_predict, "most tokens per answer")
        ->check(CLI::Range(1, 1 << 20));
    c->add_option("--temp", o.temp, "temperature; 0 = greedy")->check(CLI::Range(0.0f, 100.0f));
    c->add_option("--system", o.system, "system message");
    c->add_option("--seed", o.seed, "random seed");
}

int cmd_chat(const ChatOptions& o) {
    LoadedModel lm = open_model(o.m, o.ctx);
    ThreadPool pool(resolve_threads(o.m.threads));
    Engine engine(lm, pool, std::min(o.ctx, lm.model->config().n_ctx_train));
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: a blocked read returns on Ctrl-C
    std::vector<ChatMessage> history;
    if (!o.system.empty()) history.push_back({"system", o.system});
    std::fprintf(
        stderr, "chat template: %s%s. Commands: /reset, /stats, /exit. Ctrl-C stops an answer.\n",
        chat_style_name(engine.chat_style()), engine.chat_template_known() ? "" : " (fallback)");
    uint64_t seed = o.seed;
    GenerateResult last;
    for (;;) {
        std::printf("\n> ");
        std::fflush(stdout);
        std::string line;
        g_interrupt = false;
        if (!std::getline(std::cin, line)) {
            if (g_interrupt) {  // Ctrl-C at the prompt: a fresh prompt, not an exit
                std::cin.clear();
                continue;
            }
            break;
        }
        if (line.empty()) continue;
        if (line == "/exit" || line == "/quit") break;
        if (line == "/reset") {
            history.erase(std::remove_if(history.begin(), history.end(),
                                         [](const ChatMessage& m) { return m.role != "system"; }),
                          history.end());
            std::printf("(history cleared)\n");
            continue;
        }
        if (line == "/stats") {
            const EngineMetrics m = engine.metrics();
            std::printf(
                "last answer: prefill %.1f tok/s, decode %.2f tok/s | session: %llu answers, %llu "
                "tokens, "
                "expert hit rate %.1f%%, %s read from disk\n",
                last.prefill_tok_s(), last.decode_tok_s(), (unsigned long long)m.requests,
                (unsigned long long)m.generated_tokens, 100 * m.experts.hit_rate(),
                format_bytes(m.disk_read_bytes).c_str());
            continue;
        }
        history.push_back({"user", line});
        std::vector<int32_t> prompt;
        try {
            prompt = engine.tokenizer().encode(engine.render(history), false, true);
            check((int)prompt.size() < engine.n_ctx(),
                  "the conversation no longer fits the context; /reset");
        } catch (const Error& e) {
            std::printf("error: %s\n", e.what());
            history.pop_back();
            continue;
        }
        GenerateParams gp;
        gp.n_predict = std::min(o.n_predict, engine.n_ctx() - (int)prompt.size());
        gp.sampling.temp = o.temp;
        gp.sampling.seed = seed++;
        gp.cancelled = [] { return g_interrupt.load(); };
        last = engine.generate(prompt, gp, [](const std::string& s) {
            std::fwrite(s.data(), 1, s.size(), stdout);
            std::fflush(stdout);
        });
        if (last.stop_reason == "cancelled") std::printf(" [stopped]");
        history.push_back({"assistant", last.text});
    }
    std::printf("\n");
    return 0;
}

}  // namespace sluice::cli
