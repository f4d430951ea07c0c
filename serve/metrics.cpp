#include "serve/metrics.h"

#include <sstream>

namespace dracarys {

namespace {
void metric(std::ostringstream& out, const char* name, const char* type, const char* help, double value) {
  out << "# HELP dracarys:" << name << ' ' << help << "\n# TYPE dracarys:" << name << ' ' << type
      << "\ndracarys:" << name << ' ' << value << '\n';
}
}  // namespace

std::string ServerMetrics::text(int processing, int waiting, int64_t batch_steps, int64_t batch_tokens,
                                int64_t batch_largest) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  out.precision(10);
  metric(out, "requests_total", "counter", "Requests that needed the model.", static_cast<double>(requests_));
  metric(out, "requests_refused_total", "counter", "Requests turned away with 503 (queue full or closing).",
         static_cast<double>(refused_));
  metric(out, "prompt_tokens_total", "counter", "Prompt tokens read.", static_cast<double>(prompt_tokens_));
  metric(out, "tokens_predicted_total", "counter", "Tokens generated.", static_cast<double>(predicted_tokens_));
  metric(out, "tokens_predicted_seconds_total", "counter", "Seconds spent generating.", generate_seconds_);
  metric(out, "time_to_first_token_seconds_total", "counter",
         "Seconds from a request's arrival to its first token, summed.", first_token_seconds_);
  metric(out, "time_to_first_token_count", "counter", "Completions that made a first token.",
         static_cast<double>(first_tokens_));
  metric(out, "predicted_tokens_seconds", "gauge", "Tokens generated per second of generating, so far.",
         generate_seconds_ > 0 ? static_cast<double>(predicted_tokens_) / generate_seconds_ : 0.0);
  metric(out, "requests_processing", "gauge", "Requests being computed.", processing);
  metric(out, "requests_deferred", "gauge", "Requests waiting for a slot.", waiting);
  metric(out, "batch_steps_total", "counter", "One-token steps taken for a batch of requests.",
         static_cast<double>(batch_steps));
  metric(out, "batch_tokens_total", "counter", "Tokens those steps made (their mean batch: this over the steps).",
         static_cast<double>(batch_tokens));
  metric(out, "batch_size_max", "gauge", "The most requests one step has carried.", static_cast<double>(batch_largest));
  return out.str();
}

}  // namespace dracarys
