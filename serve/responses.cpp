#include "serve/responses.h"

#include <atomic>
#include <chrono>

namespace dracarys {

namespace {

double ms(double seconds) { return seconds * 1e3; }

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

void send_json(httplib::Response& res, const json& j, int status) {
  res.status = status;
  res.set_content(dump(j), "application/json; charset=utf-8");
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& field) {
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

bool send_event(httplib::DataSink& sink, const std::string& data) {
  const std::string event = "data: " + data + "\n\n";
  return sink.write(event.data(), event.size());
}

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

json openai_json(const std::string& id, const std::string& model, json choices) {
  return {{"id", id}, {"object", "text_completion"}, {"created", unix_time()}, {"model", model}, {"choices", choices}};
}

json openai_choice(const std::string& text, size_t index, const json& finish) {
  return {{"text", text}, {"index", index}, {"logprobs", nullptr}, {"finish_reason", finish}};
}

std::string openai_id() {
  static std::atomic<uint64_t> counter{0};
  return "cmpl-" + std::to_string(unix_time()) + "-" + std::to_string(++counter);
}

json attention_json(const AttentionMaps& maps) {
  json tokens = json::array();
  for (size_t t = 0; t < maps.ids.size(); ++t) tokens.push_back({{"id", maps.ids[t]}, {"piece", maps.tokens[t]}});
  json layers = json::array();
  for (const auto& layer : maps.layers) {  // [heads, T, T]
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
  return {{"tokens", tokens},
          {"layers", maps.layers.size()},
          {"heads", maps.layers.empty() ? 0 : maps.layers[0].size(0)},
          {"weights", layers}};
}

}  // namespace dracarys
