#include "serve/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <malloc.h>
#include <sys/socket.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "common/attention_weights.h"
#include "data/corpus.h"
#include "serve/completion.h"
#include "serve/page.h"

namespace dracarys {

namespace {

using nlohmann::json;

// Text the model made may hold bytes that are not UTF-8 (a cut byte-fallback character):
// they are sent as U+FFFD rather than refused.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, const json& j, int status = 200) {
  res.status = status;
  res.set_content(dump(j), "application/json; charset=utf-8");
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& field = "") {
  const char* type = status == 401   ? "authentication_error"
                     : status == 503 ? "unavailable_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  send_json(
      res,
      {{"error",
        {{"code", status}, {"message", message}, {"type", type}, {"param", field.empty() ? json() : json(field)}}}},
      status);
}

// One server-sent event; false when the client is gone.
bool send_event(httplib::DataSink& sink, const std::string& data) {
  const std::string event = "data: " + data + "\n\n";
  return sink.write(event.data(), event.size());
}

double ms(double seconds) { return seconds * 1e3; }

// llama.cpp's /completion answer (also the last event of a stream, whose content is then "").
json completion_json(const CompletionResult& r, const std::string& model, bool with_content) {
  const auto& st = r.stats;
  return {{"content", with_content ? r.text : ""},
          {"stop", true},
          {"model", model},
          {"tokens", r.ids},
          {"prompt_tokens", r.prompt_ids},
          {"tokens_predicted", r.ids.size()},
          {"tokens_evaluated", r.prompt_ids.size()},
          {"truncated", st.prompt_truncated},
          {"stopped_eos", r.stopped_by_end},
          {"stopped_limit", !r.stopped_by_end && !r.cancelled},
          {"timings",
           {{"prompt_n", st.prompt_tokens},
            {"prompt_ms", ms(st.prompt_seconds)},
            {"predicted_n", st.generated_tokens},
            {"predicted_ms", ms(st.generate_seconds)},
            {"predicted_per_second", st.generated_tokens / std::max(st.generate_seconds, 1e-9)}}}};
}

std::string finish_reason(const CompletionResult& r) { return r.stopped_by_end ? "stop" : "length"; }

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// OpenAI's chunk or answer skeleton.
json openai_json(const std::string& id, const std::string& model, json choices) {
  return {{"id", id}, {"object", "text_completion"}, {"created", unix_time()}, {"model", model}, {"choices", choices}};
}

json openai_choice(const std::string& text, size_t index, const json& finish) {
  return {{"text", text}, {"index", index}, {"logprobs", nullptr}, {"finish_reason", finish}};
}

// What is wrong with a request's framing, as a status and a message; nothing when it is fine.
// httplib 0.11 reads a chunked body without any limit, caps form-encoded bodies at 8 KB without
// saying so, and answers byte ranges of any number: these are refused here, before the body is read.
std::optional<std::pair<int, std::string>> framing_problem(const httplib::Request& req, size_t max_body_bytes) {
  if (req.has_header("Transfer-Encoding"))
    return std::pair{411, std::string("send the body with a Content-Length header (chunked bodies are not accepted)")};
  const size_t lengths = req.get_header_value_count("Content-Length");
  if (lengths > 1) return std::pair{400, std::string("the request has more than one Content-Length header")};
  if (lengths == 1) {
    const std::string length = req.get_header_value("Content-Length");
    if (length.empty() || length.size() > 18 || length.find_first_not_of("0123456789") != std::string::npos)
      return std::pair{400, std::string("Content-Length must be a whole number of bytes")};
    const size_t bytes = std::stoull(length);
    if (bytes > max_body_bytes)
      return std::pair{413, "the request body is larger than the server's limit of " + std::to_string(max_body_bytes) +
                                " bytes (--max-body-bytes)"};
    const std::string type = req.get_header_value("Content-Type");
    if (bytes > CPPHTTPLIB_FORM_URL_ENCODED_PAYLOAD_MAX_LENGTH &&
        (type.rfind("application/x-www-form-urlencoded", 0) == 0 || type.rfind("multipart/form-data", 0) == 0))
      return std::pair{413, std::string("form-encoded bodies (curl -d) are limited to 8192 bytes; send JSON with "
                                        "Content-Type: application/json (curl -H 'Content-Type: application/json')")};
  }
  if (req.has_header("Range")) return std::pair{416, std::string("byte ranges are not served")};
  return std::nullopt;
}

}  // namespace

Server::Server(LoadedModel& model, ServerOptions options)
    : m_(model),
      o_(std::move(options)),
      admission_(o_.parallel, o_.queue),
      http_(std::make_unique<GuardedHttpServer>(o_.connections)) {
  // A thread per connection allowed (the guard sizes the pool): slow clients cannot take the
  // threads that /health and the page need.
  http_->set_payload_max_length(o_.max_body_bytes);
  // httplib's default also sets SO_REUSEPORT, with which a second server would share a port
  // already in use instead of being refused: only SO_REUSEADDR (a quick restart) is kept.
  // The socket is noted, to raise its backlog once bound (see bind()).
  http_->set_socket_options([this](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_socket_ = sock;
  });
  routes();
}

Server::~Server() = default;

int Server::bind() {
  const int port =
      o_.port == 0 ? http_->bind_to_any_port(o_.host) : (http_->bind_to_port(o_.host, o_.port) ? o_.port : -1);
  if (port < 0)
    throw std::runtime_error("cannot listen on " + o_.host + ":" + std::to_string(o_.port) +
                             " (is the port in use, or the address not this machine's?)");
  // httplib 0.11 listens with a backlog of 5: more clients connecting at once would have their
  // connections dropped and retried a second later. Listening again only resizes the backlog.
  if (listen_socket_ >= 0) ::listen(listen_socket_, SOMAXCONN);
  return port;
}

bool Server::listen() { return http_->listen_after_bind(); }

void Server::stop() {
  stopping_ = true;
  admission_.close();
  http_->stop();
}

void Server::routes() {
  auto& http = *http_;

  // Errors httplib makes itself (no route, a body past the limit) get the same JSON form.
  // A request with byte ranges gets no body at all: httplib would cut any body into every range
  // asked for (1,300 ranges made 13.7 MB of a 3.9 KB request).
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || !req.ranges.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string message = res.status == 404   ? "no such route (see GET / and the README)"
                                : res.status == 413 ? "the request body is larger than the server's limit"
                                                    : "the request could not be read";
    send_error(res, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("{} {}: {}", req.method, req.path, what);
    send_error(res, 500, "the server failed on this request: " + what);
  });
  http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::info("{} {} {}", req.method, req.path, res.status);
  });

  // The request's framing is checked before its body is read, then the API key, when set,
  // guards everything but the page and /health.
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (const auto problem = framing_problem(req, o_.max_body_bytes)) {
      if (req.ranges.empty())
        send_error(res, problem->first, problem->second);
      else
        res.status = problem->first;  // (no body: see the error handler)
      return httplib::Server::HandlerResponse::Handled;
    }
    if (o_.api_key.empty() || req.path == "/" || req.path == "/health")
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string bearer = "Bearer " + o_.api_key;
    if (req.get_header_value("Authorization") == bearer || req.get_header_value("X-Api-Key") == o_.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, 401, "a valid API key is needed (Authorization: Bearer KEY)");
    return httplib::Server::HandlerResponse::Handled;
  });

  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(page_html(), "text/html; charset=utf-8");
  });

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const auto c = admission_.counts();
    send_json(res, {{"status", stopping_ ? "closing" : "ok"},
                    {"slots_idle", c.slots - c.running},
                    {"slots_processing", c.running},
                    {"requests_waiting", c.waiting},
                    {"heap_in_use_bytes", mallinfo2().uordblks}});  // (malloc's, every arena)
  });

  http.Get("/props", [this](const httplib::Request&, httplib::Response& res) {
    const auto& cfg = m_.model->config();
    json names = json::array();
    for (const auto& s : speakers_by_count(m_)) names.push_back(s.first);
    send_json(res, {{"model", o_.model_name},
                    {"layers", cfg.layers},
                    {"heads", cfg.heads},
                    {"d_model", cfg.d_model},
                    {"context", cfg.context},
                    {"vocab_size", cfg.vocab_size},
                    {"speaker_prefix", m_.speakers},
                    {"speakers", names},
                    {"limits",
                     {{"max_tokens", o_.limits.max_tokens},
                      {"max_prompt_bytes", o_.limits.max_prompt_bytes},
                      {"max_choices", o_.limits.max_choices},
                      {"parallel", o_.parallel},
                      {"queue", o_.queue}}}});
  });

  // Parses, checks the speaker, waits for a slot, then hands the request to `run`; every
  // refusal is a JSON error.
  auto handle = [this](auto parse, auto run) {
    return [this, parse, run](const httplib::Request& req, httplib::Response& res) {
      try {
        auto request = parse(req.body);
        if (!request.speaker.empty()) {
          if (!m_.speakers) throw RequestError(400, "speaker", "this model was trained without speaker names");
          const std::string spelled = corpus_speaker_name(m_, request.speaker);
          if (spelled.empty())
            throw RequestError(400, "speaker", "'" + request.speaker + "' is not a speaker of the training corpus");
          request.speaker = spelled;
        }
        std::shared_ptr<Admission::Ticket> ticket = admission_.enter();
        if (!ticket)
          return send_error(
              res, 503, stopping_ ? "the server is shutting down" : "the server is busy: too many requests waiting");
        run(request, std::move(ticket), res);
      } catch (const RequestError& e) {
        send_error(res, e.status, e.what(), e.field);
      }
    };
  };
  auto with_speaker = [](const std::string& speaker, const std::string& prompt) {
    return speaker.empty() ? prompt : speaker_line(speaker, prompt);
  };
  auto until_stopped = [this](auto&& on_piece) {
    return [this, on_piece](const CompletionPiece& p) { return !stopping_ && on_piece(p); };
  };

  // llama.cpp's /completion.
  http.Post("/completion",
            handle([this](const std::string& body) { return parse_completion(body, o_.limits); },
                   [this, with_speaker, until_stopped](
                       const CompletionRequest& r, std::shared_ptr<Admission::Ticket> ticket, httplib::Response& res) {
                     const std::string prompt = with_speaker(r.speaker, r.prompts.front());
                     if (!r.stream) {
                       auto result = run_completion(m_, prompt, r.sampling, r.max_new_tokens, r.ignore_eos,
                                                    until_stopped([](auto&) { return true; }));
                       return send_json(res, completion_json(result, o_.model_name, true));
                     }
                     res.set_header("Cache-Control", "no-cache");
                     res.set_chunked_content_provider("text/event-stream", [this, r, prompt, ticket, until_stopped](
                                                                               size_t, httplib::DataSink& sink) {
                       auto result = run_completion(
                           m_, prompt, r.sampling, r.max_new_tokens, r.ignore_eos,
                           until_stopped([&sink](const CompletionPiece& p) {
                             return send_event(sink, dump({{"content", p.text}, {"stop", false}, {"tokens", p.ids}}));
                           }));
                       if (result.cancelled) return false;  // the client is gone: close
                       if (!send_event(sink, dump(completion_json(result, o_.model_name, false)))) return false;
                       sink.done();
                       return true;
                     });
                   }));

  // OpenAI's /v1/completions: each prompt gets n completions, with seeds seed, seed + 1, ...
  http.Post(
      "/v1/completions",
      handle([this](const std::string& body) { return parse_openai_completion(body, o_.limits); },
             [this, until_stopped](const CompletionRequest& r, std::shared_ptr<Admission::Ticket> ticket,
                                   httplib::Response& res) {
               static std::atomic<uint64_t> counter{0};
               const std::string id = "cmpl-" + std::to_string(unix_time()) + "-" + std::to_string(++counter);
               // Runs every completion in order; on_piece(choice index, piece) streams.
               auto run_all = [this, r, until_stopped](auto&& on_piece, auto&& on_end) {
                 size_t index = 0;
                 for (const auto& prompt : r.prompts) {
                   for (int64_t c = 0; c < r.choices; ++c, ++index) {
                     SamplingOptions s = r.sampling;
                     s.seed += static_cast<uint64_t>(c);
                     auto result =
                         run_completion(m_, prompt, s, r.max_new_tokens, false,
                                        until_stopped([&](const CompletionPiece& p) { return on_piece(index, p); }));
                     if (result.cancelled || !on_end(index, result)) return false;
                   }
                 }
                 return true;
               };
               if (!r.stream) {
                 json choices = json::array();
                 int64_t prompt_tokens = 0, completion_tokens = 0;
                 run_all([](size_t, const CompletionPiece&) { return true; },
                         [&](size_t index, const CompletionResult& result) {
                           choices.push_back(openai_choice(result.text, index, finish_reason(result)));
                           prompt_tokens += static_cast<int64_t>(result.prompt_ids.size());
                           completion_tokens += static_cast<int64_t>(result.ids.size());
                           return true;
                         });
                 auto j = openai_json(id, o_.model_name, choices);
                 j["usage"] = {{"prompt_tokens", prompt_tokens},
                               {"completion_tokens", completion_tokens},
                               {"total_tokens", prompt_tokens + completion_tokens}};
                 return send_json(res, j);
               }
               res.set_header("Cache-Control", "no-cache");
               res.set_chunked_content_provider(
                   "text/event-stream", [this, id, ticket, run_all](size_t, httplib::DataSink& sink) {
                     const bool finished = run_all(
                         [&](size_t index, const CompletionPiece& p) {
                           return send_event(
                               sink, dump(openai_json(id, o_.model_name, {openai_choice(p.text, index, nullptr)})));
                         },
                         [&](size_t index, const CompletionResult& result) {
                           return send_event(
                               sink,
                               dump(openai_json(id, o_.model_name, {openai_choice("", index, finish_reason(result))})));
                         });
                     if (!finished || !send_event(sink, "[DONE]")) return false;
                     sink.done();
                     return true;
                   });
             }));

  // The weights --attention-map draws: weights[layer][head][t] holds query t's t + 1 weights
  // over the tokens 0..t (the causal mask hides the rest).
  http.Post(
      "/attention",
      handle(
          [this](const std::string& body) { return parse_attention(body, o_.limits, m_.model->config().vocab_size); },
          [this, with_speaker](const AttentionRequest& r, std::shared_ptr<Admission::Ticket>, httplib::Response& res) {
            const auto maps = r.tokens ? compute_attention(m_.model, m_.tokenizer, *r.tokens)
                                       : compute_attention(m_.model, m_.tokenizer, with_speaker(r.speaker, r.prompt));
            json tokens = json::array();
            for (size_t t = 0; t < maps.ids.size(); ++t)
              tokens.push_back({{"id", maps.ids[t]}, {"piece", maps.tokens[t]}});
            json layers = json::array();
            for (const auto& layer : maps.layers) {
              json heads = json::array();
              for (int64_t h = 0; h < layer.size(0); ++h) {
                const auto w = layer.select(0, h);
                const float* data = w.data_ptr<float>();
                const int64_t T = w.size(0);
                json rows = json::array();
                for (int64_t t = 0; t < T; ++t) rows.push_back(std::vector<float>(data + t * T, data + t * T + t + 1));
                heads.push_back(std::move(rows));
              }
              layers.push_back(std::move(heads));
            }
            send_json(res, {{"tokens", tokens},
                            {"layers", maps.layers.size()},
                            {"heads", maps.layers.empty() ? 0 : maps.layers[0].size(0)},
                            {"weights", layers}});
          }));
}

}  // namespace dracarys
