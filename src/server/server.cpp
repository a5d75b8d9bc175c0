#include "server/server.h"

#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "core/error.h"

namespace sluice {

using json = nlohmann::json;

namespace {

std::string new_id(const char* prefix) {
    static std::atomic<uint64_t> n{0};
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s-%llx%04llx", prefix,
                  (unsigned long long)std::chrono::system_clock::now().time_since_epoch().count(),
                  (unsigned long long)(n++ & 0xffff));
    return buf;
}

int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void send_error(httplib::Response& res, int status, const std::string& msg, const std::string& type,
                const std::string& param = "") {
    res.status = status;
    res.set_content(error_body(msg, type, param).dump(), "application/json");
}

std::string sse(const json& j) {
    return "data: " + j.dump() + "\n\n";
}

class Routes {
  public:
    Routes(Engine& e, const ServerOptions& o) : e_(e), o_(o) {}

    void completion(const httplib::Request& req, httplib::Response& res, bool chat) {
        ApiRequest ar;
        std::vector<int32_t> prompt;
        try {
            ar = parse_api_request(req.body, chat, o_.limits);
            const std::string text =
                chat ? e_.render(ar.messages, {true, ar.enable_thinking}) : ar.prompt;
            if (!chat && text.empty()) throw RequestError("'prompt' must not be empty", "prompt");
            prompt = e_.tokenizer().encode(text, !chat, /*parse_special=*/chat);
            if (prompt.empty())
                throw RequestError("the prompt gives no tokens", chat ? "messages" : "prompt");
            if ((int)prompt.size() >= e_.n_ctx())
                throw RequestError("prompt is " + std::to_string(prompt.size()) +
                                       " tokens; the context is " + std::to_string(e_.n_ctx()),
                                   chat ? "messages" : "prompt");
        } catch (const RequestError& err) {
            return send_error(res, 400, err.what(), "invalid_request_error", err.param);
        } catch (const Error& err) {  // e.g. invalid UTF-8
            return send_error(res, 400, err.what(), "invalid_request_error");
        }
        ar.gen.n_predict = std::min(ar.gen.n_predict, e_.n_ctx() - (int)prompt.size());
        const std::string id = new_id(chat ? "chatcmpl" : "cmpl");
        const int64_t created = now_s();
        const std::string object = chat ? "chat.completion" : "text_completion";
        auto chunk = [&, id, created, chat](const std::string& text, const json& finish,
                                            bool first) {
            json choice = {{"index", 0}, {"finish_reason", finish}, {"logprobs", json()}};
            if (chat) {
                json delta = json::object();
                if (first) delta["role"] = "assistant";
                if (!text.empty() || first) delta["content"] = text;
                choice["delta"] = delta;
            } else {
                choice["text"] = text;
            }
            return json{{"id", id},
                        {"object", chat ? "chat.completion.chunk" : "text_completion"},
                        {"created", created},
                        {"model", o_.model_name},
                        {"choices", json::array({choice})}};
        };
        // Generation runs inside the content provider: it can see the client leave.
        res.set_chunked_content_provider(
            ar.stream ? "text/event-stream" : "application/json",
            [this, ar, prompt, chat, chunk, id, created, object](size_t,
                                                                 httplib::DataSink& sink) mutable {
                bool gone = false;
                GenerateParams gp = ar.gen;
                gp.cancelled = [&] { return gone || !sink.is_writable(); };
                const auto t0 = std::chrono::steady_clock::now();
                if (ar.stream && chat) {
                    const std::string s = sse(chunk("", json(), true));
                    gone = !sink.write(s.data(), s.size());
                }
                auto on_text = [&](const std::string& piece) {
                    if (!ar.stream || gone) return;
                    const std::string s = sse(chunk(piece, json(), false));
                    gone = !sink.write(s.data(), s.size());
                };
                const GenerateResult r = e_.generate(prompt, gp, on_text);
                const json usage = {{"prompt_tokens", r.n_prompt},
                                    {"completion_tokens", (int)r.tokens.size()},
                                    {"total_tokens", r.n_prompt + (int)r.tokens.size()}};
                if (!gone && r.stop_reason != "cancelled") {
                    std::string out;
                    if (ar.stream) {
                        out += sse(chunk("", finish_reason(r), false));
                        if (ar.include_usage) {
                            json u = chunk("", json(), false);
                            u["choices"] = json::array();
                            u["usage"] = usage;
                            out += sse(u);
                        }
                        out += "data: [DONE]\n\n";
                    } else {
                        json choice = {{"index", 0},
                                       {"finish_reason", finish_reason(r)},
                                       {"logprobs", json()}};
                        if (chat)
                            choice["message"] = {{"role", "assistant"}, {"content", r.text}};
                        else
                            choice["text"] = r.text;
                        out = json{{"id", id},
                                   {"object", object},
                                   {"created", created},
                                   {"model", o_.model_name},
                                   {"choices", json::array({choice})},
                                   {"usage", usage}}
                                  .dump();
                    }
                    sink.write(out.data(), out.size());
                }
                const StreamStats& st = e_.metrics().experts;
                std::fprintf(
                    stderr,
                    "%s %s: prompt %d tok, generated %zu tok, %.1f tok/s, expert hit rate %.1f%%, "
                    "%.2f s%s\n",
                    chat ? "chat" : "completion", id.c_str(), r.n_prompt, r.tokens.size(),
                    r.decode_tok_s(), 100 * st.hit_rate(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                    r.stop_reason == "cancelled" ? " (client left: cancelled)" : "");
                sink.done();
                return true;
            });
    }

    void metrics(httplib::Response& res) {
        const EngineMetrics m = e_.metrics();
        char buf[2048];
        std::snprintf(buf, sizeof buf,
                      "# HELP sluice_requests_total Completed generation requests.\n# TYPE "
                      "sluice_requests_total counter\n"
                      "sluice_requests_total %llu\n"
                      "# HELP sluice_requests_cancelled_total Requests whose client "
                      "disconnected.\n# TYPE sluice_requests_cancelled_total counter\n"
                      "sluice_requests_cancelled_total %llu\n"
                      "# HELP sluice_prompt_tokens_total Prompt tokens processed.\n# TYPE "
                      "sluice_prompt_tokens_total counter\n"
                      "sluice_prompt_tokens_total %llu\n"
                      "# HELP sluice_generated_tokens_total Tokens generated.\n# TYPE "
                      "sluice_generated_tokens_total counter\n"
                      "sluice_generated_tokens_total %llu\n"
                      "# HELP sluice_decode_tokens_per_second Decode speed of the last request.\n# "
                      "TYPE sluice_decode_tokens_per_second gauge\n"
                      "sluice_decode_tokens_per_second %.3f\n"
                      "# HELP sluice_expert_hit_rate Share of expert uses served from sluice's "
                      "cache.\n# TYPE sluice_expert_hit_rate gauge\n"
                      "sluice_expert_hit_rate %.4f\n"
                      "# HELP sluice_expert_bytes_read_total Expert bytes requested from the "
                      "file.\n# TYPE sluice_expert_bytes_read_total counter\n"
                      "sluice_expert_bytes_read_total %llu\n"
                      "# HELP sluice_disk_read_bytes_total Bytes read from storage while "
                      "generating.\n# TYPE sluice_disk_read_bytes_total counter\n"
                      "sluice_disk_read_bytes_total %llu\n",
                      (unsigned long long)m.requests, (unsigned long long)m.cancelled,
                      (unsigned long long)m.prompt_tokens, (unsigned long long)m.generated_tokens,
                      m.last_decode_tok_s, m.experts.hit_rate(),
                      (unsigned long long)m.experts.bytes_read,
                      (unsigned long long)m.disk_read_bytes);
        res.set_content(buf, "text/plain; version=0.0.4");
    }

  private:
    Engine& e_;
    const ServerOptions& o_;
};

}  // namespace

namespace {
sigset_t shutdown_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}
}  // namespace

void block_shutdown_signals() {
    const sigset_t set = shutdown_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

int run_server(Engine& engine, const ServerOptions& o) {
    // Signals go to one waiting thread, which stops the server cleanly.
    block_shutdown_signals();
    sigset_t set = shutdown_signals();

    httplib::Server svr;
    // Connections beyond the pool wait in its queue; generation itself is serialized anyway.
    svr.new_task_queue = [] { return new httplib::ThreadPool(16); };
    svr.set_payload_max_length(o.max_body_bytes);
    svr.set_read_timeout(30, 0);
    Routes routes(engine, o);
    auto json_route = [&](bool chat) {
        return [&routes, chat](const httplib::Request& req, httplib::Response& res) {
            routes.completion(req, res, chat);
        };
    };
    svr.Post("/v1/chat/completions", json_route(true));
    svr.Post("/v1/completions", json_route(false));
    svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
        res.set_content(json{{"object", "list"},
                             {"data", json::array({{{"id", o.model_name},
                                                    {"object", "model"},
                                                    {"created", now_s()},
                                                    {"owned_by", "sluice"}}})}}
                            .dump(),
                        "application/json");
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(R"({"status":"ok"})", "application/json");
    });
    svr.Get("/metrics",
            [&](const httplib::Request&, httplib::Response& res) { routes.metrics(res); });
    svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
        if (res.body.empty()) {
            const std::string msg = res.status == 404   ? "no such route"
                                    : res.status == 413 ? "request body too large"
                                                        : "bad request";
            res.set_content(error_body(msg, "invalid_request_error", "").dump(),
                            "application/json");
        }
    });
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string msg = "internal error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                msg = e.what();
            } catch (...) {
            }
            res.status = 500;
            res.set_content(error_body(msg, "server_error", "").dump(), "application/json");
        });

    int port = o.port;
    if (port == 0)
        port = svr.bind_to_any_port(o.host);
    else if (!svr.bind_to_port(o.host, port))
        port = -1;
    check(port > 0, "cannot listen on " + o.host + ":" + std::to_string(o.port));
    std::fprintf(stderr, "listening on http://%s:%d (model %s, chat template %s%s)\n",
                 o.host.c_str(), port, o.model_name.c_str(), chat_style_name(engine.chat_style()),
                 engine.chat_template_known() ? "" : ": template not recognised, using ChatML");
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&set, &sig);
        std::fprintf(stderr, "signal %d: shutting down\n", sig);
        svr.stop();
    });
    svr.listen_after_bind();
    if (stopper.joinable()) {
        pthread_kill(stopper.native_handle(), SIGTERM);  // wakes sigwait if listen ended otherwise
        stopper.join();
    }
    return 0;
}

}  // namespace sluice
