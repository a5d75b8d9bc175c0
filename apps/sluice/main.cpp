// sluice: dispatch only; each subcommand lives in its own file.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
    CLI::App app{
        "sluice: run Mixture-of-Experts LLMs larger than RAM by streaming experts from SSD"};
    app.require_subcommand(1);
    sluice::cli::RunOptions run;
    sluice::cli::EvalOptions eval;
    sluice::cli::register_run(app, run);
    sluice::cli::register_eval(app, eval);
    sluice::cli::BenchOptions bench;
    sluice::cli::register_bench(app, bench);
    sluice::cli::ServeOptions serve;
    sluice::cli::register_serve(app, serve);
    sluice::cli::ChatOptions chat;
    sluice::cli::register_chat(app, chat);
    sluice::cli::ConvertOptions convert;
    sluice::cli::register_convert(app, convert);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (app.got_subcommand("run")) return sluice::cli::cmd_run(run);
        if (app.got_subcommand("eval")) return sluice::cli::cmd_eval(eval);
        if (app.got_subcommand("bench")) return sluice::cli::cmd_bench(bench);
        if (app.got_subcommand("serve")) return sluice::cli::cmd_serve(serve);
        if (app.got_subcommand("chat")) return sluice::cli::cmd_chat(chat);
        if (app.got_subcommand("convert") || app.got_subcommand("quantize"))
            return sluice::cli::cmd_convert(convert);
    } catch (const sluice::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
