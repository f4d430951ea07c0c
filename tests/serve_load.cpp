// dracarys-serve-load: a load benchmark for dracarys-serve on loopback, bounded in count and
// time. It starts the server on a free port, warms it up, then has N concurrent clients send
// streaming completions until a fixed number of requests is done (or the time runs out), and
// prints requests/s, generated tokens/s, time to first token (median and 99th percentile),
// errors, and the server's memory after the warm-up, after half the load and after all of it.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "serve_util.h"

using namespace dracarys::testing;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct LoadOptions {
  std::string server = std::string(DRACARYS_BIN_DIR) + "/dracarys-serve";
  std::string checkpoint;
  std::vector<std::string> server_args;
  int clients = 32;
  int requests = 256;
  int tokens = 64;
  double max_seconds = 300;
  std::string log = "serve-load.log";
};

struct Outcome {
  bool ok = false;
  std::string error;  // why not, for the report
  double ttft = 0;    // seconds to the first streamed piece
  int64_t tokens = 0;
};

const std::vector<std::string> kPrompts = {
    "jon snow: Winter is", "tyrion lannister: I drink and",
    "arya stark: Not",     "cersei lannister: When you play the game of thrones, you",
    "ned stark:",          "daenerys targaryen: I will"};

// One streaming completion, as a client sees it.
Outcome one_request(httplib::Client& client, int index, int tokens) {
  Outcome out;
  const json body = {{"prompt", kPrompts[index % kPrompts.size()]},
                     {"n_predict", tokens},
                     {"ignore_eos", true},  // every request generates exactly `tokens`
                     {"seed", index},
                     {"stream", true}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/completion";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string raw;
  const auto start = Clock::now();
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (out.ttft == 0 && raw.empty()) out.ttft = std::chrono::duration<double>(Clock::now() - start).count();
    raw.append(data, n);
    return true;
  };
  auto res = client.send(req);
  if (!res) {
    out.error = "no answer: " + httplib::to_string(res.error());
    return out;
  }
  if (res->status != 200) {
    out.error = "HTTP " + std::to_string(res->status) + " " + res->body;
    return out;
  }
  // The last event carries the totals.
  const auto last = raw.rfind("data: ");
  const auto final = last == std::string::npos ? json() : json::parse(raw.substr(last + 6), nullptr, false);
  if (!final.is_object() || final.value("stop", false) != true) {
    out.error = "no final event";
    return out;
  }
  out.tokens = final.value("tokens_predicted", int64_t{0});
  out.ok = out.tokens == tokens;
  if (!out.ok) out.error = std::to_string(out.tokens) + " tokens instead of " + std::to_string(tokens);
  return out;
}

// Runs `count` requests from `clients` threads; returns each request's outcome and the seconds.
std::pair<std::vector<Outcome>, double> load(int port, int clients, int count, int tokens, double max_seconds) {
  std::vector<Outcome> outcomes(static_cast<size_t>(count));
  std::atomic<int> next{0};
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(max_seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&] {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(static_cast<time_t>(max_seconds) + 1);
      for (int i; (i = next++) < count && Clock::now() < deadline;)
        outcomes[static_cast<size_t>(i)] = one_request(client, i, tokens);
    });
  for (auto& t : threads) t.join();
  return {outcomes, std::chrono::duration<double>(Clock::now() - start).count()};
}

// The server's malloc heap in use (GET /health), in MB: unlike resident memory it does not
// count what the allocator keeps for reuse, so it grows only with memory held across requests.
double heap_mb(int port) {
  httplib::Client client("127.0.0.1", port);
  auto res = client.Get("/health");
  if (!res) return -1;
  const auto j = json::parse(res->body, nullptr, false);
  return j.is_object() ? j.value("heap_in_use_bytes", 0.0) / (1024.0 * 1024.0) : -1;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t at = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[at];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dracarys-serve-load: concurrent streaming clients against dracarys-serve on loopback"};
  LoadOptions o;
  app.add_option("-c,--checkpoint", o.checkpoint, "Checkpoint to serve")->required();
  app.add_option("--server", o.server, "The dracarys-serve executable")->capture_default_str();
  app.add_option("--clients", o.clients, "Concurrent clients")->capture_default_str()->check(CLI::Range(1, 512));
  app.add_option("--requests", o.requests, "Requests in all (after a warm-up of one per client)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--tokens", o.tokens, "Tokens each request generates")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-seconds", o.max_seconds, "Stop sending requests after this long")->capture_default_str();
  app.add_option("--log", o.log, "Where the server's log goes")->capture_default_str();
  app.add_option("--server-args", o.server_args, "More options for the server, e.g. --server-args=--parallel,1")
      ->delimiter(',');
  CLI11_PARSE(app, argc, argv);

  ServerProcess server;
  std::vector<std::string> args = {"-c", o.checkpoint, "--queue", std::to_string(o.clients)};
  args.insert(args.end(), o.server_args.begin(), o.server_args.end());
  if (!server.start(o.server, args, o.log)) {
    std::fprintf(stderr, "dracarys-serve-load: the server did not start; its log:\n%s\n", server.log().c_str());
    return 1;
  }

  // Warm-up: one request per client, so that buffers and thread pools exist before measuring.
  auto [warm, warm_seconds] = load(server.port, o.clients, o.clients, o.tokens, o.max_seconds);
  const long rss_warm = server.memory_kb("VmRSS:"), peak_warm = server.memory_kb("VmHWM:");
  const double heap_warm = heap_mb(server.port);

  // The load in two halves, the server's memory read after each: growth from one half to the
  // next would be memory kept across requests.
  const int first = o.requests / 2;
  auto [outcomes, seconds] = load(server.port, o.clients, first, o.tokens, o.max_seconds);
  const long rss_half = server.memory_kb("VmRSS:");
  const double heap_half = heap_mb(server.port);
  auto [rest, rest_seconds] = load(server.port, o.clients, o.requests - first, o.tokens, o.max_seconds);
  outcomes.insert(outcomes.end(), rest.begin(), rest.end());
  seconds += rest_seconds;
  const long rss_after = server.memory_kb("VmRSS:"), peak_after = server.memory_kb("VmHWM:");
  const double heap_after = heap_mb(server.port);

  int done = 0, errors = 0;
  int64_t tokens = 0;
  std::vector<double> ttft;
  for (const auto& r : outcomes) {
    if (r.ok) {
      ++done;
      tokens += r.tokens;
      ttft.push_back(r.ttft);
    } else {
      ++errors;
    }
  }
  for (const auto& r : warm) errors += r.ok ? 0 : 1;
  for (const auto* round : {&warm, &outcomes})
    for (const auto& r : *round)
      if (!r.ok) std::fprintf(stderr, "dracarys-serve-load: a request failed: %s\n", r.error.c_str());
  const int stop_status = server.stop(SIGTERM);
  const bool clean_stop = WIFEXITED(stop_status) && WEXITSTATUS(stop_status) == 0;

  const json report = {{"clients", o.clients},
                       {"requests", o.requests},
                       {"completed", done},
                       {"errors", errors},
                       {"tokens_per_request", o.tokens},
                       {"seconds", seconds},
                       {"requests_per_s", done / seconds},
                       {"generated_tokens_per_s", static_cast<double>(tokens) / seconds},
                       {"ttft_median_ms", percentile(ttft, 0.5) * 1e3},
                       {"ttft_p99_ms", percentile(ttft, 0.99) * 1e3},
                       {"server_rss_mb_after_warmup", rss_warm / 1024.0},
                       {"server_rss_mb_after_half", rss_half / 1024.0},
                       {"server_rss_mb_after_load", rss_after / 1024.0},
                       {"server_peak_mb_after_warmup", peak_warm / 1024.0},
                       {"server_peak_mb_after_load", peak_after / 1024.0},
                       {"server_heap_mb_after_warmup", heap_warm},
                       {"server_heap_mb_after_half", heap_half},
                       {"server_heap_mb_after_load", heap_after},
                       {"server_stopped_cleanly", clean_stop}};
  std::printf("%d clients, %d requests of %d tokens in %.1f s: %.2f requests/s, %.0f generated tokens/s\n", o.clients,
              done, o.tokens, seconds, done / seconds, static_cast<double>(tokens) / seconds);
  std::printf("time to first token: median %.0f ms, 99th percentile %.0f ms; errors: %d\n", percentile(ttft, 0.5) * 1e3,
              percentile(ttft, 0.99) * 1e3, errors);
  std::printf(
      "server memory: resident %.1f MB after the warm-up, %.1f MB after half the load, %.1f MB after all of it "
      "(peak %.1f -> %.1f MB)\n",
      rss_warm / 1024.0, rss_half / 1024.0, rss_after / 1024.0, peak_warm / 1024.0, peak_after / 1024.0);
  std::printf("server heap in use: %.2f MB after the warm-up, %.2f MB after half the load, %.2f MB after all of it\n",
              heap_warm, heap_half, heap_after);
  std::printf("%s\n", report.dump().c_str());
  return errors == 0 && done == o.requests && clean_stop ? 0 : 1;
}
