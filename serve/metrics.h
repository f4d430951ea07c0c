// What GET /metrics reports, in Prometheus's text format (as llama-server's /metrics): requests,
// tokens, the queue, time to first token and generation speed. Counters only ever grow.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace dracarys {

class ServerMetrics {
 public:
  // One completion done: its tokens, the seconds from its request's arrival to its first
  // token (negative: it made none), and the seconds it spent generating.
  void completion_done(int64_t prompt_tokens, int64_t predicted_tokens, double first_token_s, double generate_s) {
    std::lock_guard<std::mutex> lock(mutex_);
    prompt_tokens_ += prompt_tokens;
    predicted_tokens_ += predicted_tokens;
    generate_seconds_ += generate_s;
    if (first_token_s >= 0) first_token_seconds_ += first_token_s, ++first_tokens_;
  }
  void request_seen() { ++requests_; }
  void request_refused() { ++refused_; }

  // The text of /metrics, with the slots busy and the requests waiting at this moment, and the
  // batch's steps, the tokens they made and its largest size (zeros without batching).
  std::string text(int processing, int waiting, int64_t batch_steps, int64_t batch_tokens, int64_t batch_largest) const;

 private:
  mutable std::mutex mutex_;
  std::atomic<int64_t> requests_{0}, refused_{0};
  int64_t prompt_tokens_ = 0, predicted_tokens_ = 0, first_tokens_ = 0;
  double generate_seconds_ = 0, first_token_seconds_ = 0;
};

}  // namespace dracarys
