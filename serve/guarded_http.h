// cpp-httplib's server with the guards version 0.11 lacks against slow and numerous clients
// (slowloris): every connection is counted, in all and per client address, and refused past the
// limits; each request must arrive, headers and body, within a deadline; an idle keep-alive
// connection is closed after a few seconds. httplib keeps parsing, routing and writing: this
// class replaces only its per-connection loop (process_and_close_socket, which httplib makes
// virtual) and the stream that loop reads from.
//
// A connection holds a pool thread for its life, so the pool has a thread for every connection
// allowed, and a slow client frees its thread at its request's deadline.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>

namespace dracarys {

struct ConnectionLimits {
  size_t max_connections = 256;               // open at once, from everyone
  size_t max_per_client = 128;                // open at once, from one address
  std::chrono::seconds request_deadline{10};  // for a request's headers and body to arrive
  std::chrono::seconds keep_alive_idle{5};    // an idle connection waits this long for its next request
};

class GuardedHttpServer : public httplib::Server {
 public:
  explicit GuardedHttpServer(ConnectionLimits limits);
  size_t open_connections() const;

 private:
  bool process_and_close_socket(socket_t sock) override;
  bool admit(const std::string& client);
  void release(const std::string& client);

  ConnectionLimits limits_;
  mutable std::mutex mutex_;
  size_t open_ = 0;
  std::map<std::string, size_t> per_client_;
};

}  // namespace dracarys
