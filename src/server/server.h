#pragma once
// OpenAI-compatible HTTP server over one Engine.
#include <atomic>
#include <string>

#include "runtime/engine.h"
#include "server/openai.h"

namespace sluice {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8080;  // 0: any free port (printed)
    std::string model_name;
    size_t max_body_bytes = 1 << 20;
    ApiLimits limits;
};

// Call first thing, before any thread exists: SIGINT/SIGTERM must be blocked in every
// thread so that run_server's waiting thread receives them.
void block_shutdown_signals();

// Serves until SIGINT/SIGTERM; returns 0 after a clean shutdown.
int run_server(Engine& engine, const ServerOptions& o);

}  // namespace sluice
