// dracarys-serve's HTTP side: the routes, their JSON, streaming, the API key and the limits.
//
//   GET  /             the page (serve/page.html, built into the executable)
//   GET  /health       {"status":"ok", slots running and waiting}
//   GET  /props        the model: shape, context, speakers, the server's limits
//   GET  /metrics      requests, tokens, the queue, time to first token (Prometheus's text)
//   GET  /v1/models, /v1/models/{id}   the one model served (OpenAI's form)
//   POST /completion   llama.cpp's fields; "stream": true sends server-sent events
//   POST /v1/completions       OpenAI's legacy completions, streamed or not
//   POST /v1/chat/completions  OpenAI's chat: the messages are the lines of a scene
//   POST /tokenize, /detokenize  llama.cpp's
//   POST /attention    every layer's and head's attention weights over a text or token ids
//   POST /trace        one layer's and head's every box of attention (engine/attention_boxes.h)
//   GET  /probe        the filters training recorded for its probe line (engine/probe.h), when
//                      the checkpoint has its OUT.probe beside it
//
// Every error is JSON: {"error": {"code", "message", "type", "param"}}. A field that would
// change the output and is not supported is refused (400), naming it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/completion.h"
#include "engine/loaded_model.h"
#include "engine/speaker_names.h"
#include "serve/admission.h"
#include "serve/batcher.h"
#include "serve/guarded_http.h"
#include "serve/metrics.h"
#include "serve/requests.h"

namespace dracarys {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;       // 0: any free port
  std::string api_key;   // when set, every route but / and /health needs it
  int parallel = 1;      // requests computed at once, each on its own KV cache
  bool batching = true;  // their one-token steps taken together (serve/batcher.h); false: each alone
  int lanes = 1;         // with batching: threads that each run a batch
  int queue = 32;        // requests that may wait for a free slot; past that, 503
  size_t max_body_bytes = 1 << 20;
  RequestLimits limits;
  ConnectionLimits connections;           // slow and numerous clients (serve/guarded_http.h)
  std::string model_name;                 // reported in responses (the checkpoint's file name)
  std::string cors_origin;                // --cors: the origin (or "*") whose pages may call the API; empty: none
  std::string user_name, assistant_name;  // chat: who a message without a name speaks as
  std::string probe_file;                 // the probe's record to serve at GET /probe; empty: none
};

class Server {
 public:
  Server(LoadedModel& model, ServerOptions options);
  ~Server();

  // Binds the socket; returns the port (the chosen one when options.port is 0). Throws
  // std::runtime_error when the address cannot be bound.
  int bind();
  // Serves until stop(); returns false when it could not.
  bool listen();
  // Thread- and signal-thread-safe: running generations end at their next token, waiting
  // requests get 503, and listen() returns.
  void stop();

 private:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  using ChoicePiece = std::function<bool(size_t, const CompletionPiece&)>;
  using ChoiceEnd = std::function<bool(size_t, const CompletionResult&)>;

  void routes();         // one line per route
  void install_hooks();  // framing, the API key, errors and the log, around every route
  void load_probe();     // o_.probe_file, checked, as GET /probe's answer
  template <class Parse, class Request>
  Handler admit(Parse parse,
                void (Server::*run)(const Request&, std::shared_ptr<Admission::Ticket>, httplib::Response&));
  std::string checked_speaker(const std::string& speaker) const;  // the corpus's spelling; RequestError if unknown
  void check_speakers(CompletionRequest& r) const;
  void check_speakers(AttentionRequest& r) const;
  void check_speakers(ChatRequest& r) const;
  void check_speakers(TraceRequest& r) const;
  // The tokens of a prompt as given: a text (with the request's speaker in front) or ids.
  std::vector<TokenId> prompt_ids(const PromptInput& prompt, const std::string& speaker) const;
  // The tokens /attention and /trace look at: the request's ids, or its text with its speaker in front.
  bool has_key(const httplib::Request& req) const;  // the API key is not set, or the request carries it
  std::optional<std::vector<TokenId>> attention_ids(const AttentionRequest& r, const char* route,
                                                    httplib::Response& res) const;
  static CompletionOptions options_of(const CompletionRequest& r);
  // One completion that ends early when the server is stopping; counted in /metrics.
  CompletionResult complete(std::vector<TokenId> prompt, const CompletionOptions& options,
                            const std::function<bool(const CompletionPiece&)>& on_piece = nullptr);
  bool complete_all(const CompletionRequest& r, const ChoicePiece& on_piece, const ChoiceEnd& on_end);

  void handle_page(const httplib::Request& req, httplib::Response& res);
  void handle_health(const httplib::Request& req, httplib::Response& res);
  void handle_props(const httplib::Request& req, httplib::Response& res);
  void handle_completion(const CompletionRequest& r, std::shared_ptr<Admission::Ticket> ticket, httplib::Response& res);
  void handle_openai_completion(const CompletionRequest& r, std::shared_ptr<Admission::Ticket> ticket,
                                httplib::Response& res);
  void handle_attention(const AttentionRequest& r, std::shared_ptr<Admission::Ticket> ticket, httplib::Response& res);
  void handle_trace(const TraceRequest& r, std::shared_ptr<Admission::Ticket> ticket, httplib::Response& res);
  void handle_probe(const httplib::Request& req, httplib::Response& res);
  void handle_chat(const ChatRequest& r, std::shared_ptr<Admission::Ticket> ticket, httplib::Response& res);
  void handle_models(const httplib::Request& req, httplib::Response& res);
  void handle_metrics(const httplib::Request& req, httplib::Response& res);
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  // The chat (serve/openai.cpp): the scene as the model's tokens, who answers it, each choice.
  std::vector<TokenId> chat_scene(const ChatRequest& r) const;
  std::string chat_speaker(const ChatRequest& r, const std::vector<TokenId>& scene, const SamplingOptions& sampling);
  bool complete_chat(const ChatRequest& r, std::vector<std::string>& names, const ChoicePiece& on_piece,
                     const ChoiceEnd& on_end);

  LoadedModel& m_;
  SpeakerNames speaker_names_;  // the checkpoint's speakers: who may answer a chat, where a line ends
  ServerOptions o_;
  Admission admission_;
  ServerMetrics metrics_;
  std::atomic<bool> stopping_{false};
  int listen_socket_ = -1;
  std::unique_ptr<GuardedHttpServer> http_;
  std::unique_ptr<Batcher> batcher_;  // with batching: the thread that runs the model
  std::string probe_json_;            // GET /probe's answer, made once; empty: no probe file
};

}  // namespace dracarys
