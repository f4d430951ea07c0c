// dracarys-serve: a trained checkpoint behind HTTP, with a page to talk to it and watch it
// attend. See serve/server.h for the routes.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include <cerrno>
#include <thread>

#include "cli/logging.h"
#include "cli/option_table.h"
#include "cli/runtime.h"
#include "engine/probe.h"
#include "serve/server.h"

using namespace dracarys;

namespace {

constexpr int kDefaultBatch = 32;  // requests in one batch unless --parallel says otherwise

struct ServeOptions {
  std::string checkpoint;
  ServerOptions server;
  int request_timeout_s = 10;   // becomes server.connections.request_deadline
  std::string weights = "f32";  // --weights f32 | q8
  RuntimeOptions runtime;
};

// Every option of dracarys-serve, once: flag, group, help and range (cli/option_table.h).
template <class Visit>
void for_each_serve_option(ServeOptions& o, Visit&& visit) {
  const char* where = "Where and for whom";
  visit(OptionSpec("-c,--checkpoint", where, "Checkpoint written by dracarys-train").no_default().must_be_given(),
        o.checkpoint);
  visit(OptionSpec("--probe-file", where,
                   "The probe file whose filters the page's training slider shows (GET /probe); default: "
                   "CHECKPOINT.probe when it exists")
            .no_default(),
        o.server.probe_file);
  visit(OptionSpec("--host", where,
                   "Address to listen on; the default, loopback, keeps the server to this machine. 0.0.0.0 opens it "
                   "to the network (then set --api-key)"),
        o.server.host);
  visit(OptionSpec("--port", where, "Port to listen on (0: any free port, printed at start)").range(0, 65535),
        o.server.port);
  visit(OptionSpec("--api-key", where,
                   "Require this key on every API route (header 'Authorization: Bearer KEY'); the page asks for it")
            .no_default(),
        o.server.api_key);
  visit(OptionSpec("--cors", where,
                   "Let pages from this origin (for example https://example.org, or * for any) call the API from "
                   "a browser: CORS headers on every answer, and OPTIONS preflights answered (default: none)")
            .no_default(),
        o.server.cors_origin);

  const char* chat = "Chat (/v1/chat/completions)";
  visit(OptionSpec("--user-name", chat, "Who a 'user' message without a 'name' speaks as (default: no speaker)")
            .no_default(),
        o.server.user_name);
  visit(OptionSpec("--assistant-name", chat,
                   "Who an 'assistant' message without a 'name' speaks as, and who answers when the request "
                   "names no 'speaker' (one of the checkpoint's speakers; default: the model picks one of them)")
            .no_default(),
        o.server.assistant_name);

  const char* load = "Load and limits";
  visit(OptionSpec("--no-batching", load,
                   "Compute each request alone on its own thread (one per core, each on one BLAS thread) instead of "
                   "taking the one-token steps of every request together"),
        NegatedFlag{o.server.batching});
  visit(OptionSpec("--batch-lanes", load,
                   "With batching: threads that each run a batch of their own (default: one per core, up to "
                   "--parallel)")
            .range(1, 64)
            .no_default(),
        o.server.lanes);
  visit(OptionSpec("--parallel", load,
                   "Requests computed at once, each with its own KV cache (default: 32 in one batch; with "
                   "--no-batching, one per core)")
            .range(1, 64)
            .no_default(),
        o.server.parallel);
  visit(weights_option(load), o.weights);
  visit(
      OptionSpec("--queue", load, "Requests that may wait for a free slot; past that the answer is 503").range(0, 1024),
      o.server.queue);
  visit(OptionSpec("--max-tokens", load, "Most tokens one completion may generate").range(1, 1 << 20),
        o.server.limits.max_tokens);
  visit(OptionSpec("--max-prompt-bytes", load, "Longest prompt accepted, in bytes").range(1, 1 << 20),
        o.server.limits.max_prompt_bytes);
  visit(
      OptionSpec("--max-choices", load, "Most completions in one request (OpenAI's n times its prompts)").range(1, 64),
      o.server.limits.max_choices);
  visit(OptionSpec("--max-body-bytes", load, "Largest request body accepted (413 past it)").range(64, 64 << 20),
        o.server.max_body_bytes);
  visit(OptionSpec("--max-connections", load, "Connections open at once, from all clients; past it a new one gets 503")
            .range(1, 4096),
        o.server.connections.max_connections);
  visit(OptionSpec("--max-connections-per-client", load, "Connections open at once from one address").range(1, 4096),
        o.server.connections.max_per_client);
  visit(OptionSpec("--request-timeout", load,
                   "Seconds a client has to send a request's headers and body (slow clients are cut off)")
            .range(1, 3600),
        o.request_timeout_s);
}

// What the options left unsaid: with batching, up to 32 requests in one batch per core, each
// batch's thread on one core; without, one request per core. Either way each thread computes
// alone on its core (thread pools that share cores fight).
void choose_defaults(const CLI::App& app, ServeOptions& o) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!app.count("--parallel")) o.server.parallel = o.server.batching ? kDefaultBatch : cores;
  if (!app.count("--threads")) o.runtime.threads = 1;
  if (!app.count("--batch-lanes")) o.server.lanes = std::max(1, std::min(cores, o.server.parallel));
}

// Registers the table's options and the runtime's.
void add_serve_options(CLI::App& app, ServeOptions& o) {
  for_each_serve_option(o, [&app](const OptionSpec& spec, auto&& member) { add_to_app(app, spec, member); });
  add_runtime_options(app, o.runtime);
}

// The ranges, and what only makes sense together; throws std::invalid_argument naming the option.
void check_serve_options(const CLI::App& app, ServeOptions& o) {
  ServeOptions copy = o;
  for_each_serve_option(copy, [](const OptionSpec& spec, const auto& member) { check_range(spec, member); });
  if (app.count("--api-key") && o.server.api_key.empty())
    throw std::invalid_argument("--api-key is empty: give a key, or leave the option out to serve without one");
  // A key with blanks or control characters cannot be sent in a header as given: nobody could use the server.
  for (unsigned char ch : o.server.api_key)
    if (ch <= ' ' || ch == 0x7f)
      throw std::invalid_argument(
          "--api-key holds a space or a control character, which no client can send in a header; give a key of "
          "printable characters without spaces");
  o.server.connections.request_deadline = std::chrono::seconds(o.request_timeout_s);
  check_runtime_options(o.runtime);
}

// SIGINT and SIGTERM: the handler only writes the signal's number into a pipe (all a handler
// may safely do, in whichever thread it lands); a thread reading the pipe stops the server.
int g_stop_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int signal) {
  const char c = static_cast<char>(signal);
  [[maybe_unused]] const auto n = write(g_stop_pipe[1], &c, 1);
}

void catch_stop_signals() {
  if (pipe(g_stop_pipe) != 0) throw std::runtime_error("cannot create a pipe for signals");
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  use_the_cpus_blas_kernels(argv);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up is seen as a failed write
  setup_logging();

  CLI::App app{
      "dracarys-serve: talk to a trained dracarys checkpoint over HTTP, and watch it attend.\n"
      "Open http://127.0.0.1:8080/ for the page, or call the API:\n"
      "  POST /completion      {\"prompt\": \"jon snow: Winter is\", \"n_predict\": 32, \"stream\": true}  "
      "(llama.cpp)\n"
      "  POST /v1/completions  {\"prompt\": \"...\", \"max_tokens\": 32}                         (OpenAI)\n"
      "  POST /attention       {\"prompt\": \"...\"}: every layer's and head's attention weights\n"
      "  GET  /health, GET /props\n"
      "Examples:\n"
      "  dracarys-serve -c got.pt\n"
      "  dracarys-serve -c got.pt --host 0.0.0.0 --port 9000 --api-key secret"};
  app.get_formatter()->column_width(30);
  ServeOptions o;
  add_serve_options(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return report_parse_error(app, e);
  }
  try {
    choose_defaults(app, o);
    check_serve_options(app, o);
    auto device = apply_runtime(o.runtime);
    auto m = load_for_inference(o.checkpoint, device, kernels_from_string(o.runtime.kernels),
                                weight_format_from_string(o.weights));
    o.server.model_name = std::filesystem::path(o.checkpoint).filename().string();
    if (!o.server.assistant_name.empty() && m.speaker_prefix)  // who answers a chat: one the model knows
      o.server.assistant_name = require_known_speaker(m, "--assistant-name", o.server.assistant_name,
                                                      "GET /props lists them, as does dracarys-infer --list-speakers");
    std::error_code no_probe;  // the training's probe record, when it lies beside the checkpoint
    if (o.server.probe_file.empty() && std::filesystem::exists(probe_path(o.checkpoint), no_probe))
      o.server.probe_file = probe_path(o.checkpoint);

    Server server(m, o.server);
    const int port = server.bind();
    catch_stop_signals();
    std::thread signal_thread([&] {
      char signal = 0;
      while (read(g_stop_pipe[0], &signal, 1) < 0 && errno == EINTR) {
      }
      if (signal == 0) return;  // the server ended by itself
      spdlog::info("{}: stopping", signal == SIGINT ? "interrupted" : "terminated");
      server.stop();
    });
    spdlog::info("{} requests at once, {} more may wait; {}", o.server.parallel, o.server.queue,
                 o.server.api_key.empty() ? "no API key" : "API key required");
    std::printf("dracarys-serve: listening on http://%s:%d/\n", o.server.host.c_str(), port);
    std::fflush(stdout);
    const bool served = server.listen();
    const char done = 0;
    [[maybe_unused]] const auto n = write(g_stop_pipe[1], &done, 1);  // ends the signal thread
    signal_thread.join();
    if (!served) throw std::runtime_error("the server stopped with an error");
    spdlog::info("stopped");
    return 0;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}
