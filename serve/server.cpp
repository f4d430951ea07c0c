#include "serve/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <malloc.h>
#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "data/corpus.h"
#include "data/text.h"
#include "serve/page.h"
#include "serve/responses.h"

namespace dracarys {

namespace {

// When the request being handled on this thread arrived: the time to its first token counts
// from here, its wait for a slot included. (A streamed answer runs on the same thread.)
thread_local std::chrono::steady_clock::time_point g_arrival;

// A client's text echoed in an error: its first 64 bytes, control characters escaped.
std::string shortened(const std::string& text) {
  constexpr size_t kEchoed = 64;
  return escape_control(text.size() > kEchoed ? text.substr(0, kEchoed) : text) + (text.size() > kEchoed ? "..." : "");
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
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
      speaker_names_(model),
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
  if (o_.batching) batcher_ = std::make_unique<Batcher>(m_, o_.parallel, o_.lanes);
  load_probe();
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
  if (batcher_) batcher_->stop();
  admission_.close();
  http_->stop();
}

// The routes, one line each; what each does is its handler's.
void Server::routes() {
  install_hooks();
  auto& http = *http_;
  auto bind_plain = [this](void (Server::*handler)(const httplib::Request&, httplib::Response&)) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) { (this->*handler)(req, res); };
  };
  http.Get("/", bind_plain(&Server::handle_page));
  http.Get("/health", bind_plain(&Server::handle_health));
  http.Get("/props", bind_plain(&Server::handle_props));
  http.Get("/metrics", bind_plain(&Server::handle_metrics));
  http.Get("/v1/models", bind_plain(&Server::handle_models));
  http.Get(R"(/v1/models/(.+))", bind_plain(&Server::handle_models));
  http.Post("/tokenize", bind_plain(&Server::handle_tokenize));
  http.Post("/detokenize", bind_plain(&Server::handle_detokenize));
  const int64_t vocab = m_.model->config().vocab_size;
  http.Post("/completion",
            admit([this, vocab](const std::string& body) { return parse_completion(body, o_.limits, vocab); },
                  &Server::handle_completion));
  http.Post("/v1/completions",
            admit([this, vocab](const std::string& body) { return parse_openai_completion(body, o_.limits, vocab); },
                  &Server::handle_openai_completion));
  http.Post("/v1/chat/completions",
            admit([this](const std::string& body) { return parse_chat(body, o_.limits); }, &Server::handle_chat));
  http.Post("/attention",
            admit([this, vocab](const std::string& body) { return parse_attention(body, o_.limits, vocab); },
                  &Server::handle_attention));
  http.Post("/trace",
            admit([this](const std::string& body) { return parse_trace(body, o_.limits, m_.model->config()); },
                  &Server::handle_trace));
  http.Get("/probe", bind_plain(&Server::handle_probe));
}

// The probe file beside the checkpoint, checked once. A damaged one, or one recorded for another
// model, is reported and left out: the rest of the server does not need it.
void Server::load_probe() {
  if (o_.probe_file.empty()) return;
  try {
    const auto record = read_probe_file(o_.probe_file);
    check_probe_fits(record, m_.model->config(), o_.probe_file);
    probe_json_ = dump(probe_json(record));
    spdlog::info("probe: {} snapshots of \"{}\" from {} (GET /probe)", record.snapshots.size(),
                 escape_control(record.text), escape_control(o_.probe_file));
  } catch (const std::exception& e) {
    spdlog::warn("{}; the page shows no training slider", e.what());
  }
}

// What runs around every route: the request's framing is checked before its body is read, then
// the API key, when set, guards everything but the page and /health; errors httplib makes
// itself and exceptions get the same JSON form; every request is logged.
void Server::install_hooks() {
  auto& http = *http_;
  // A request with byte ranges gets no body at all: httplib would cut any body into every range
  // asked for (1,300 ranges made 13.7 MB of a 3.9 KB request).
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || !req.ranges.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string message = res.status == 404   ? "no such route (docs/serving.md lists them; GET / is the page)"
                                : res.status == 413 ? "the request body is larger than the server's limit"
                                                    : "the request could not be read";
    send_error(res, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }));
  // A failure no handler expected: the client gets a sentence of ours, never a library's text
  // (LibTorch's carries source paths and stack addresses); the log gets its first line.
  http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    const FailureText failure = failure_text(ep);
    spdlog::error("{} {}: {}", req.method, req.path, failure.for_log);
    send_error(res, 500, "the server failed on this request (" + failure.for_client + ")");
  });
  http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::info("{} {} {}", req.method, req.path, res.status);
  });
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!o_.cors_origin.empty()) {  // --cors: a page from that origin may call the API
      res.set_header("Access-Control-Allow-Origin", o_.cors_origin);
      if (o_.cors_origin != "*") res.set_header("Vary", "Origin");
      if (req.method == "OPTIONS") {  // the browser's preflight: answered before the key is asked for
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Api-Key");
        res.set_header("Access-Control-Max-Age", "600");
        res.status = 204;
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (const auto problem = framing_problem(req, o_.max_body_bytes)) {
      if (req.ranges.empty())
        send_error(res, problem->first, problem->second);
      else
        res.status = problem->first;  // (no body: see the error handler)
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.path == "/" || req.path == "/health" || has_key(req)) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, 401, "a valid API key is needed (Authorization: Bearer KEY)");
    return httplib::Server::HandlerResponse::Handled;
  });
}

// The route's handler for a request that needs the model: parse the body, check the speaker,
// wait for a slot, then `run`; every refusal is a JSON error.
template <class Parse, class Request>
Server::Handler Server::admit(Parse parse, void (Server::*run)(const Request&, std::shared_ptr<Admission::Ticket>,
                                                               httplib::Response&)) {
  return [this, parse, run](const httplib::Request& req, httplib::Response& res) {
    try {
      g_arrival = std::chrono::steady_clock::now();
      Request request = parse(req.body);
      check_speakers(request);
      metrics_.request_seen();
      std::shared_ptr<Admission::Ticket> ticket = admission_.enter();
      if (!ticket) {
        metrics_.request_refused();
        return send_error(res, 503,
                          stopping_ ? "the server is shutting down" : "the server is busy: too many requests waiting");
      }
      (this->*run)(request, std::move(ticket), res);
    } catch (const RequestError& e) {
      send_error(res, e.status, e.what(), e.field);
    }
  };
}

void Server::check_speakers(CompletionRequest& r) const { r.speaker = checked_speaker(r.speaker); }
void Server::check_speakers(AttentionRequest& r) const { r.speaker = checked_speaker(r.speaker); }
void Server::check_speakers(ChatRequest& r) const { r.completion.speaker = checked_speaker(r.completion.speaker); }
void Server::check_speakers(TraceRequest& r) const { check_speakers(r.input); }

std::string Server::checked_speaker(const std::string& speaker) const {
  if (speaker.empty()) return speaker;
  if (!m_.speaker_prefix) throw RequestError(400, "speaker", "this model was trained without speaker names");
  const std::string spelled = corpus_speaker_name(m_, speaker);
  if (spelled.empty()) throw RequestError(400, "speaker", "'" + speaker + "' is not a speaker of the training corpus");
  return spelled;
}

std::vector<TokenId> Server::prompt_ids(const PromptInput& prompt, const std::string& speaker) const {
  if (prompt.ids) return *prompt.ids;
  return prompt_tokens(m_.tokenizer, speaker.empty() ? prompt.text : speaker_line(speaker, prompt.text));
}

CompletionOptions Server::options_of(const CompletionRequest& r) {
  CompletionOptions o;
  o.sampling = r.sampling;
  o.max_new_tokens = r.max_new_tokens;
  o.ignore_end = r.ignore_eos;
  o.stop = r.stop;
  o.top_logprobs = r.top_logprobs;
  return o;
}

CompletionResult Server::complete(std::vector<TokenId> prompt, const CompletionOptions& options,
                                  const std::function<bool(const CompletionPiece&)>& on_piece) {
  const auto arrival = g_arrival;
  double first_token_s = -1;
  auto hand_on = [&](const CompletionPiece& p) {
    if (first_token_s < 0) first_token_s = seconds_since(arrival);
    return !stopping_ && (!on_piece || on_piece(p));
  };
  auto result = batcher_ ? batcher_->complete(std::move(prompt), options, hand_on)
                         : run_completion(m_, std::move(prompt), options, hand_on);
  metrics_.completion_done(static_cast<int64_t>(result.prompt_ids.size()), static_cast<int64_t>(result.ids.size()),
                           first_token_s, result.stats.generate_seconds);
  return result;
}

void Server::handle_page(const httplib::Request&, httplib::Response& res) {
  res.set_content(page_html(), "text/html; charset=utf-8");
}

// /health answers without the key (load balancers ask it); the heap's size only with it.
void Server::handle_health(const httplib::Request& req, httplib::Response& res) {
  const auto c = admission_.counts();
  json health = {{"status", stopping_ ? "closing" : "ok"},
                 {"slots_idle", c.slots - c.running},
                 {"slots_processing", c.running},
                 {"requests_waiting", c.waiting}};
  if (has_key(req)) health["heap_in_use_bytes"] = mallinfo2().uordblks;  // (malloc's, every arena)
  send_json(res, health);
}

bool Server::has_key(const httplib::Request& req) const {
  return o_.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + o_.api_key ||
         req.get_header_value("X-Api-Key") == o_.api_key;
}

void Server::handle_props(const httplib::Request&, httplib::Response& res) {
  const auto& cfg = m_.model->config();
  json names = json::array();
  for (const auto& s : speakers_by_count(m_)) names.push_back(s.first);
  send_json(res, {{"model", o_.model_name},
                  {"layers", cfg.layers},
                  {"heads", cfg.heads},
                  {"d_model", cfg.d_model},
                  {"context", cfg.context},
                  {"vocab_size", cfg.vocab_size},
                  {"speaker_prefix", m_.speaker_prefix},
                  {"speakers", names},
                  {"limits",
                   {{"max_tokens", o_.limits.max_tokens},
                    {"max_prompt_bytes", o_.limits.max_prompt_bytes},
                    {"max_choices", o_.limits.max_choices},
                    {"parallel", o_.parallel},
                    {"queue", o_.queue}}}});
}

// llama.cpp's /completion: one completion, whole or streamed as events of its pieces.
void Server::handle_completion(const CompletionRequest& r, std::shared_ptr<Admission::Ticket> ticket,
                               httplib::Response& res) {
  say_if_clamped(r, res);
  auto prompt = prompt_ids(r.prompts.front(), r.speaker);
  const CompletionOptions options = options_of(r);
  if (!r.stream) return send_json(res, completion_json(complete(prompt, options), o_.model_name, true, m_.tokenizer));
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [this, prompt, options, ticket](size_t, httplib::DataSink& sink) {
        auto result = complete(prompt, options, [&](const CompletionPiece& p) {
          json event = {{"content", p.text}, {"stop", false}, {"tokens", p.ids}};
          if (!p.logprobs.empty()) event["completion_probabilities"] = llama_probabilities(p.logprobs, m_.tokenizer);
          return send_event(sink, dump(event));
        });
        if (result.cancelled) return false;  // the client is gone: close
        if (!send_event(sink, dump(completion_json(result, o_.model_name, false, m_.tokenizer)))) return false;
        sink.done();
        return true;
      });
}

// Every completion an OpenAI request asks for, in order: each prompt `choices` times, with seeds
// seed, seed + 1, ...; on_piece(choice index, piece) as they come, on_end(choice index, result)
// after each. False when one of them said stop.
bool Server::complete_all(const CompletionRequest& r, const ChoicePiece& on_piece, const ChoiceEnd& on_end) {
  size_t index = 0;
  for (const auto& prompt : r.prompts)
    for (int64_t c = 0; c < r.choices; ++c, ++index) {
      CompletionOptions options = options_of(r);
      options.sampling.seed += static_cast<uint64_t>(c);
      auto result = complete(prompt_ids(prompt, r.speaker), options,
                             [&](const CompletionPiece& p) { return on_piece(index, p); });
      if (result.cancelled || !on_end(index, result)) return false;
    }
  return true;
}

// One head's every box (the page's walk through), for a text or for token ids.
// The request's tokens, or nullopt after a refusal when there are more than the route's bound
// (max_attention_tokens: its reply and its working memory grow with their square).
std::optional<std::vector<TokenId>> Server::attention_ids(const AttentionRequest& r, const char* route,
                                                          httplib::Response& res) const {
  auto ids =
      r.tokens ? *r.tokens : m_.tokenizer.encode(r.speaker.empty() ? r.prompt : speaker_line(r.speaker, r.prompt));
  const auto& c = m_.model->config();
  const int64_t most = max_attention_tokens(c);
  if (static_cast<int64_t>(ids.size()) <= most) return ids;
  send_error(res, 400,
             fmt::format("{} takes at most {} tokens on this model ({} layers x {} heads x tokens^2 stays under {} "
                         "numbers; docs/serving.md), and this request has {}",
                         route, most, c.layers, c.heads, kMaxAttentionCells, ids.size()),
             r.tokens ? "tokens" : "prompt");
  return std::nullopt;
}

void Server::handle_trace(const TraceRequest& r, std::shared_ptr<Admission::Ticket>, httplib::Response& res) {
  const auto ids = attention_ids(r.input, "/trace", res);
  if (!ids) return;
  const auto traced = trace_sequence(m_.model, m_.tokenizer, *ids);
  send_json(res, trace_json(traced, head_boxes(traced, r.layer, r.head), r.layer, r.head));
}

void Server::handle_probe(const httplib::Request&, httplib::Response& res) {
  if (probe_json_.empty())
    return send_error(res, 404,
                      "this checkpoint has no probe file beside it (dracarys-train --probe writes OUT.probe)");
  res.set_content(probe_json_, "application/json; charset=utf-8");
}

// The weights --attention-map draws, for a text or for token ids.
void Server::handle_attention(const AttentionRequest& r, std::shared_ptr<Admission::Ticket>, httplib::Response& res) {
  const auto ids = attention_ids(r, "/attention", res);
  if (ids) send_json(res, attention_json(compute_attention(m_.model, m_.tokenizer, *ids)));
}

// OpenAI's model list: the one checkpoint served; /v1/models/{id} is it, or 404.
void Server::handle_models(const httplib::Request& req, httplib::Response& res) {
  if (req.matches.size() < 2) return send_json(res, {{"object", "list"}, {"data", {model_json(o_.model_name)}}});
  if (req.matches[1] != o_.model_name)
    return send_error(res, 404,
                      "no model '" + shortened(req.matches[1].str()) + "' here (GET /v1/models lists the one there is)",
                      "model");
  send_json(res, model_json(o_.model_name));
}

void Server::handle_metrics(const httplib::Request&, httplib::Response& res) {
  const auto c = admission_.counts();
  const auto b = batcher_ ? batcher_->stats() : Batcher::Stats{};
  res.set_content(metrics_.text(c.running, c.waiting, b.steps, b.tokens, b.largest),
                  "text/plain; version=0.0.4; charset=utf-8");
}

// llama.cpp's /tokenize: the ids (with each one's text when asked).
void Server::handle_tokenize(const httplib::Request& req, httplib::Response& res) {
  try {
    const auto r = parse_tokenize(req.body, o_.limits);
    json tokens = json::array();
    for (auto id : m_.tokenizer.encode(r.content)) {
      if (r.with_pieces)
        tokens.push_back({{"id", id}, {"piece", m_.tokenizer.decode({id})}});
      else
        tokens.push_back(id);
    }
    send_json(res, {{"tokens", tokens}});
  } catch (const RequestError& e) {
    send_error(res, e.status, e.what(), e.field);
  }
}

void Server::handle_detokenize(const httplib::Request& req, httplib::Response& res) {
  try {
    send_json(res,
              {{"content", m_.tokenizer.decode(parse_detokenize(req.body, o_.limits, m_.model->config().vocab_size))}});
  } catch (const RequestError& e) {
    send_error(res, e.status, e.what(), e.field);
  }
}

}  // namespace dracarys
