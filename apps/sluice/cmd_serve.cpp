#include <malloc.h>

#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/error.h"
#include "runtime/engine.h"
#include "server/server.h"

namespace sluice::cli {

void register_serve(CLI::App& app, ServeOptions& o) {
    CLI::App* c = app.add_subcommand(
        "serve", "OpenAI-compatible HTTP server (loopback unless --host says otherwise)");
    add_model_options(c, o.m);
    c->add_option("--host", o.host, "address to listen on");
    c->add_option("--port", o.port, "port (0: any free port)")->check(CLI::Range(0, 65535));
    c->add_option("--ctx", o.ctx, "context size per request (prompt + completion)")
        ->check(CLI::Range(16, 1 << 20));
    c->add_option("--max-tokens-limit", o.max_tokens, "largest max_tokens a request may ask for")
        ->check(CLI::Range(1, 1 << 20));
    c->add_option("--max-body", o.max_body, "largest request body in bytes")
        ->check(CLI::Range(1024, 1 << 30));
}

int cmd_serve(const ServeOptions& o) {
    // Every HTTP thread would otherwise get its own malloc arena: RSS that grows with the
    // number of clients ever seen, not with the work.
    mallopt(M_ARENA_MAX, 2);
    block_shutdown_signals();
    LoadedModel lm = open_model(o.m, o.ctx);
    ThreadPool pool(resolve_threads(o.m.threads));
    Engine engine(lm, pool, std::min(o.ctx, lm.model->config().n_ctx_train));
    ServerOptions so;
    so.host = o.host;
    so.port = o.port;
    so.max_body_bytes = (size_t)o.max_body;
    so.limits.max_tokens = o.max_tokens;
    so.model_name = std::filesystem::path(o.m.model).filename().string();
    if (!engine.chat_template_known())
        std::fprintf(
            stderr,
            "warning: the model's chat template is not one sluice recognises; chat uses ChatML\n");
    return run_server(engine, so);
}

}  // namespace sluice::cli
