#include "serve/requests.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "data/text.h"

namespace dracarys {

namespace {

using nlohmann::json;

// One request body's fields, each read with its type and range checked. A field that is
// absent or null takes its default.
class Fields {
 public:
  explicit Fields(const std::string& body) {
    body_ = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (body_.is_discarded()) throw RequestError(400, "", "the request body is not valid JSON");
    if (!body_.is_object()) throw RequestError(400, "", "the request body must be a JSON object");
  }

  bool has(const char* name) const { return body_.contains(name) && !body_[name].is_null(); }
  const json& operator[](const char* name) const { return body_[name]; }

  static std::string text(const json& v, const std::string& name, size_t max_bytes) {
    if (!v.is_string()) throw RequestError(400, name, "'" + name + "' must be a string");
    const auto& s = v.get_ref<const std::string&>();
    if (s.size() > max_bytes)
      throw RequestError(413, name, "'" + name + "' is longer than " + std::to_string(max_bytes) + " bytes");
    if (!valid_utf8(s)) throw RequestError(400, name, "'" + name + "' is not valid UTF-8");
    return s;
  }

  std::string text(const char* name, const std::string& fallback, size_t max_bytes) const {
    return has(name) ? text(body_[name], name, max_bytes) : fallback;
  }

  int64_t integer(const char* name, int64_t fallback, int64_t lo, int64_t hi) const {
    if (!has(name)) return fallback;
    const auto& v = body_[name];
    if (!v.is_number_integer()) throw RequestError(400, name, std::string("'") + name + "' must be an integer");
    // Unsigned values past int64 would wrap: compare them as unsigned first.
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) throw out_of_range(name, lo, hi);
    const auto x = v.get<int64_t>();
    if (x < lo || x > hi) throw out_of_range(name, lo, hi);
    return x;
  }

  double number(const char* name, double fallback, double lo, double hi) const {
    if (!has(name)) return fallback;
    const auto& v = body_[name];
    if (!v.is_number()) throw RequestError(400, name, std::string("'") + name + "' must be a number");
    const double x = v.get<double>();
    if (!(x >= lo && x <= hi))
      throw RequestError(
          400, name, std::string("'") + name + "' must be between " + short_number(lo) + " and " + short_number(hi));
    return x;
  }

  bool flag(const char* name, bool fallback) const {
    if (!has(name)) return fallback;
    if (!body_[name].is_boolean()) throw RequestError(400, name, std::string("'") + name + "' must be true or false");
    return body_[name].get<bool>();
  }

 private:
  static RequestError out_of_range(const char* name, int64_t lo, int64_t hi) {
    return RequestError(
        400, name, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  static std::string short_number(double x) {
    std::string s = std::to_string(x);
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s;
  }
  json body_;
};

// The seed a client gave, or one drawn at random (-1 or absent), as llama.cpp does.
uint64_t seed_from(const Fields& f) {
  const int64_t seed = f.integer("seed", -1, -1, std::numeric_limits<int64_t>::max());
  if (seed >= 0) return static_cast<uint64_t>(seed);
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

// temperature 0 means greedy (as in llama.cpp and OpenAI's API).
void read_sampling(const Fields& f, SamplingOptions& s, double default_temperature, bool with_top_k) {
  const double temperature = f.number("temperature", default_temperature, 0.0, SamplingOptions::kMaxTemperature);
  s.greedy = temperature == 0.0;
  s.temperature = s.greedy ? 1.0 : temperature;
  if (with_top_k) s.top_k = f.integer("top_k", 0, 0, std::numeric_limits<int32_t>::max());
  s.top_p = f.number("top_p", 1.0, 0.0, 1.0);
  if (s.top_p == 0.0) throw RequestError(400, "top_p", "'top_p' must be above 0 (1 keeps every token)");
  s.seed = seed_from(f);
}

}  // namespace

CompletionRequest parse_completion(const std::string& body, const RequestLimits& limits) {
  Fields f(body);
  CompletionRequest r;
  if (!f.has("prompt")) throw RequestError(400, "prompt", "'prompt' is missing");
  r.prompts = {Fields::text(f["prompt"], "prompt", limits.max_prompt_bytes)};
  r.speaker = f.text("speaker", "", 256);
  const int64_t n = f.integer("n_predict", -1, -1, limits.max_tokens);
  r.max_new_tokens = n < 0 ? limits.max_tokens : n;
  read_sampling(f, r.sampling, 0.8, /*with_top_k=*/true);
  r.stream = f.flag("stream", false);
  r.ignore_eos = f.flag("ignore_eos", false);
  return r;
}

CompletionRequest parse_openai_completion(const std::string& body, const RequestLimits& limits) {
  Fields f(body);
  CompletionRequest r;
  if (!f.has("prompt")) throw RequestError(400, "prompt", "'prompt' is missing");
  const auto& prompt = f["prompt"];
  if (prompt.is_array()) {
    if (prompt.empty()) throw RequestError(400, "prompt", "'prompt' is an empty list");
    if (static_cast<int64_t>(prompt.size()) > limits.max_choices)
      throw RequestError(400, "prompt", "'prompt' lists more than " + std::to_string(limits.max_choices) + " prompts");
    for (const auto& p : prompt) r.prompts.push_back(Fields::text(p, "prompt", limits.max_prompt_bytes));
  } else {
    r.prompts = {Fields::text(prompt, "prompt", limits.max_prompt_bytes)};
  }
  r.choices = f.integer("n", 1, 1, limits.max_choices);
  if (r.choices * static_cast<int64_t>(r.prompts.size()) > limits.max_choices)
    throw RequestError(
        400, "n",
        "'n' times the number of prompts is more than " + std::to_string(limits.max_choices) + " completions");
  r.max_new_tokens = f.integer("max_tokens", std::min<int64_t>(16, limits.max_tokens), 0, limits.max_tokens);
  read_sampling(f, r.sampling, 1.0, /*with_top_k=*/false);
  r.stream = f.flag("stream", false);
  return r;
}

AttentionRequest parse_attention(const std::string& body, const RequestLimits& limits, int64_t vocab_size) {
  Fields f(body);
  AttentionRequest r;
  if (f.has("tokens") == f.has("prompt"))
    throw RequestError(400, "prompt", "give either 'prompt' (a text) or 'tokens' (token ids), not both");
  if (f.has("prompt")) {
    r.prompt = Fields::text(f["prompt"], "prompt", limits.max_prompt_bytes);
    r.speaker = f.text("speaker", "", 256);
    return r;
  }
  const auto& tokens = f["tokens"];
  if (!tokens.is_array() || tokens.empty())
    throw RequestError(400, "tokens", "'tokens' must be a non-empty list of token ids");
  if (tokens.size() > limits.max_prompt_bytes)
    throw RequestError(413, "tokens", "'tokens' lists more than " + std::to_string(limits.max_prompt_bytes) + " ids");
  r.tokens.emplace();
  for (const auto& t : tokens) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab_size ||
        (t.is_number_unsigned() && t.get<uint64_t>() >= static_cast<uint64_t>(vocab_size)))
      throw RequestError(400, "tokens", "'tokens' must hold token ids from 0 to " + std::to_string(vocab_size - 1));
    r.tokens->push_back(t.get<int64_t>());
  }
  return r;
}

}  // namespace dracarys
