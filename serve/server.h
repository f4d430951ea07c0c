// dracarys-serve's HTTP side: the routes, their JSON, streaming, the API key and the limits.
//
//   GET  /             the page (serve/page.html, built into the executable)
//   GET  /health       {"status":"ok", slots running and waiting}
//   GET  /props        the model: shape, context, speakers, the server's limits
//   POST /completion   llama.cpp's fields; "stream": true sends server-sent events
//   POST /v1/completions  OpenAI's legacy completions, streamed or not
//   POST /attention    every layer's and head's attention weights over a text or token ids
//
// Every error is JSON: {"error": {"code", "message", "type", "param"}}.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/loaded_model.h"
#include "serve/admission.h"
#include "serve/guarded_http.h"
#include "serve/requests.h"

namespace dracarys {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port
  std::string api_key;  // when set, every route but / and /health needs it
  int parallel = 1;     // requests computed at once, each on its own KV cache
  int queue = 32;       // requests that may wait for a free slot; past that, 503
  size_t max_body_bytes = 1 << 20;
  RequestLimits limits;
  ConnectionLimits connections;  // slow and numerous clients (serve/guarded_http.h)
  std::string model_name;        // reported in responses (the checkpoint's file name)
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
  void routes();
  LoadedModel& m_;
  ServerOptions o_;
  Admission admission_;
  std::atomic<bool> stopping_{false};
  int listen_socket_ = -1;
  std::unique_ptr<GuardedHttpServer> http_;
};

}  // namespace dracarys
