#include "serve/requests.h"

#include <cmath>

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "data/text.h"

namespace dracarys {

namespace {

using nlohmann::json;

constexpr int64_t kMaxRepeatLastN = 1 << 20;  // -1 ("everything seen") becomes this
constexpr int64_t kMaxTopLogprobs = 20;       // alternatives per token (OpenAI allows 20 in chat)
constexpr size_t kMaxStops = 16, kMaxStopBytes = 256;
constexpr size_t kMaxMessages = 4096;

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

  // Refuses any field not in `known` (nor in kAcceptedFields): the client would not know that
  // it was ignored.
  void only(std::initializer_list<const char*> known) const {
    for (const auto& [key, value] : body_.items()) {
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      if (std::find(kAcceptedFields.begin(), kAcceptedFields.end(), key) != kAcceptedFields.end()) continue;
      throw RequestError(400, key,
                         "'" + key + "' is not supported by this route (docs/serving.md lists each route's fields)");
    }
  }
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

  // A token count: a whole number from `lo` up; one above the server's limit is clamped to
  // it, as llama-server does, and what was asked is kept in `asked` for the response to say.
  int64_t token_count(const char* name, int64_t fallback, int64_t lo, int64_t limit, int64_t& asked) const {
    const int64_t n = integer(name, fallback, lo, std::numeric_limits<int64_t>::max());
    if (n <= limit) return n;
    asked = n;
    return limit;
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
void read_sampling(const Fields& f, SamplingOptions& s, double default_temperature) {
  const double temperature = f.number("temperature", default_temperature, 0.0, SamplingOptions::kMaxTemperature);
  s.greedy = temperature == 0.0;
  s.temperature = s.greedy ? 1.0 : temperature;
  s.top_k = f.integer("top_k", 0, 0, std::numeric_limits<int32_t>::max());
  s.top_p = f.number("top_p", 1.0, 0.0, 1.0);
  if (s.top_p == 0.0) throw RequestError(400, "top_p", "'top_p' must be above 0 (1 keeps every token)");
  s.min_p = f.number("min_p", 0.0, 0.0, 1.0);
  s.repeat_penalty = f.number("repeat_penalty", 1.0, 0.0, 10.0);
  if (s.repeat_penalty == 0.0) throw RequestError(400, "repeat_penalty", "'repeat_penalty' must be above 0 (1: off)");
  const int64_t last_n = f.integer("repeat_last_n", 64, -1, kMaxRepeatLastN);
  s.repeat_last_n = last_n < 0 ? kMaxRepeatLastN : last_n;  // -1: everything seen
  s.presence_penalty = f.number("presence_penalty", 0.0, -2.0, 2.0);
  s.frequency_penalty = f.number("frequency_penalty", 0.0, -2.0, 2.0);
  s.seed = seed_from(f);
}

// "stop": one text or a list of them; each must be non-empty.
std::vector<std::string> read_stop(const Fields& f) {
  if (!f.has("stop")) return {};
  const auto& v = f["stop"];
  std::vector<std::string> stops;
  if (v.is_string()) {
    stops.push_back(Fields::text(v, "stop", kMaxStopBytes));
  } else if (v.is_array()) {
    if (v.size() > kMaxStops) throw RequestError(400, "stop", "'stop' lists more than " + std::to_string(kMaxStops));
    for (const auto& s : v) stops.push_back(Fields::text(s, "stop", kMaxStopBytes));
  } else {
    throw RequestError(400, "stop", "'stop' must be a string or a list of strings");
  }
  for (const auto& s : stops)
    if (s.empty()) throw RequestError(400, "stop", "'stop' holds an empty string");
  return stops;
}

// Token ids of a prompt: a non-empty list of ids the vocabulary has.
std::vector<TokenId> token_ids(const json& v, const std::string& name, const RequestLimits& limits,
                               int64_t vocab_size) {
  if (v.empty()) throw RequestError(400, name, "'" + name + "' is an empty list of token ids");
  if (v.size() > limits.max_prompt_bytes)
    throw RequestError(413, name, "'" + name + "' lists more than " + std::to_string(limits.max_prompt_bytes) + " ids");
  std::vector<TokenId> ids;
  for (const auto& t : v) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab_size ||
        (t.is_number_unsigned() && t.get<uint64_t>() >= static_cast<uint64_t>(vocab_size)))
      throw RequestError(400, name, "'" + name + "' must hold token ids from 0 to " + std::to_string(vocab_size - 1));
    ids.push_back(t.get<int64_t>());
  }
  return ids;
}

bool is_id_list(const json& v) { return v.is_array() && !v.empty() && v[0].is_number(); }

// One prompt: a text, or a list of token ids.
PromptInput prompt_input(const json& v, const RequestLimits& limits, int64_t vocab_size) {
  if (is_id_list(v)) return {"", token_ids(v, "prompt", limits, vocab_size)};
  if (!v.is_string()) throw RequestError(400, "prompt", "'prompt' must be a string or a list of token ids");
  return {Fields::text(v, "prompt", limits.max_prompt_bytes), std::nullopt};
}

}  // namespace

CompletionRequest parse_completion(const std::string& body, const RequestLimits& limits, int64_t vocab_size) {
  Fields f(body);
  f.only({"prompt", "speaker", "n_predict", "max_tokens", "temperature", "top_k", "top_p", "min_p", "seed", "stop",
          "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty", "n_probs", "stream",
          "ignore_eos"});
  CompletionRequest r;
  if (!f.has("prompt")) throw RequestError(400, "prompt", "'prompt' is missing");
  r.prompts = {prompt_input(f["prompt"], limits, vocab_size)};
  r.speaker = f.text("speaker", "", 256);
  const char* limit = f.has("n_predict") ? "n_predict" : "max_tokens";
  const int64_t n = f.token_count(limit, -1, -1, limits.max_tokens, r.asked_tokens);
  r.max_new_tokens = n < 0 ? limits.max_tokens : n;
  read_sampling(f, r.sampling, 0.8);
  r.stop = read_stop(f);
  const int64_t n_probs = f.integer("n_probs", 0, 0, kMaxTopLogprobs);
  r.top_logprobs = n_probs > 0 ? n_probs : -1;
  r.stream = f.flag("stream", false);
  r.ignore_eos = f.flag("ignore_eos", false);
  return r;
}

namespace {

// What /v1/completions and /v1/chat/completions share: n, the length, sampling, stop, stream.
void read_openai_common(const Fields& f, const RequestLimits& limits, size_t prompts, CompletionRequest& r) {
  r.choices = f.integer("n", 1, 1, limits.max_choices);
  if (r.choices * static_cast<int64_t>(prompts) > limits.max_choices)
    throw RequestError(
        400, "n",
        "'n' times the number of prompts is more than " + std::to_string(limits.max_choices) + " completions");
  read_sampling(f, r.sampling, 1.0);
  r.stop = read_stop(f);
  if (r.stop.size() > 4) throw RequestError(400, "stop", "'stop' lists more than 4 sequences (OpenAI's limit)");
  r.speaker = f.text("speaker", "", 256);
  r.stream = f.flag("stream", false);
  if (f.has("logit_bias") && !(f["logit_bias"].is_object() && f["logit_bias"].empty()))
    throw RequestError(400, "logit_bias", "'logit_bias' is not supported");
  if (f.has("best_of") && f.integer("best_of", 1, 1, limits.max_choices) != r.choices)
    throw RequestError(400, "best_of", "'best_of' other than n is not supported");
}

}  // namespace

CompletionRequest parse_openai_completion(const std::string& body, const RequestLimits& limits, int64_t vocab_size) {
  Fields f(body);
  f.only({"model",
          "prompt",
          "max_tokens",
          "temperature",
          "top_p",
          "n",
          "stream",
          "seed",
          "stop",
          "logprobs",
          "echo",
          "presence_penalty",
          "frequency_penalty",
          "logit_bias",
          "best_of",
          "speaker",
          "top_k",
          "min_p",
          "repeat_penalty",
          "repeat_last_n"});
  CompletionRequest r;
  if (!f.has("prompt")) throw RequestError(400, "prompt", "'prompt' is missing");
  const auto& prompt = f["prompt"];
  if (prompt.is_array() && !is_id_list(prompt)) {  // several prompts, texts or lists of ids
    if (prompt.empty()) throw RequestError(400, "prompt", "'prompt' is an empty list");
    if (static_cast<int64_t>(prompt.size()) > limits.max_choices)
      throw RequestError(400, "prompt", "'prompt' lists more than " + std::to_string(limits.max_choices) + " prompts");
    for (const auto& p : prompt) r.prompts.push_back(prompt_input(p, limits, vocab_size));
  } else {
    r.prompts = {prompt_input(prompt, limits, vocab_size)};
  }
  read_openai_common(f, limits, r.prompts.size(), r);
  r.max_new_tokens =
      f.token_count("max_tokens", std::min<int64_t>(16, limits.max_tokens), 0, limits.max_tokens, r.asked_tokens);
  r.top_logprobs = f.integer("logprobs", -1, -1, kMaxTopLogprobs);
  r.echo = f.flag("echo", false);
  if (r.echo && r.top_logprobs >= 0)
    throw RequestError(400, "echo", "'echo' with 'logprobs' is not supported (the prompt's tokens are not scored)");
  return r;
}

ChatRequest parse_chat(const std::string& body, const RequestLimits& limits) {
  Fields f(body);
  f.only({"model",
          "messages",
          "max_tokens",
          "max_completion_tokens",
          "temperature",
          "top_p",
          "n",
          "stream",
          "seed",
          "stop",
          "logprobs",
          "top_logprobs",
          "presence_penalty",
          "frequency_penalty",
          "logit_bias",
          "speaker",
          "top_k",
          "min_p",
          "repeat_penalty",
          "repeat_last_n"});
  ChatRequest c;
  if (!f.has("messages")) throw RequestError(400, "messages", "'messages' is missing");
  const auto& messages = f["messages"];
  if (!messages.is_array() || messages.empty())
    throw RequestError(400, "messages", "'messages' must be a non-empty list of messages");
  if (messages.size() > kMaxMessages)
    throw RequestError(400, "messages", "'messages' lists more than " + std::to_string(kMaxMessages));
  for (const auto& m : messages) {
    if (!m.is_object()) throw RequestError(400, "messages", "each message must be an object");
    for (const auto& [key, value] : m.items())
      if (key != "role" && key != "content" && key != "name")
        throw RequestError(400, "messages", "a message's '" + key + "' is not supported");
    ChatMessage message;
    message.role = m.contains("role") ? Fields::text(m["role"], "role", 32) : "";
    if (message.role == "system" || message.role == "developer")
      throw RequestError(400, "messages",
                         "a '" + message.role +
                             "' message is not supported: the model has learned only lines that characters speak, "
                             "so give each line as a 'user' or 'assistant' message with the speaker's 'name'");
    if (message.role != "user" && message.role != "assistant")
      throw RequestError(400, "messages", "a message's 'role' must be 'user' or 'assistant'");
    message.content = m.contains("content") ? Fields::text(m["content"], "content", limits.max_prompt_bytes) : "";
    if (m.contains("name") && !m["name"].is_null()) message.name = Fields::text(m["name"], "name", 256);
    c.messages.push_back(std::move(message));
  }
  auto& r = c.completion;
  read_openai_common(f, limits, 1, r);
  const char* limit = f.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.max_new_tokens = f.token_count(limit, limits.max_tokens, 0, limits.max_tokens, r.asked_tokens);
  if (f.flag("logprobs", false))
    r.top_logprobs = f.integer("top_logprobs", 0, 0, kMaxTopLogprobs);
  else if (f.has("top_logprobs"))
    throw RequestError(400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
  return c;
}

TokenizeRequest parse_tokenize(const std::string& body, const RequestLimits& limits) {
  Fields f(body);
  f.only({"content", "with_pieces", "add_special"});
  if (!f.has("content")) throw RequestError(400, "content", "'content' is missing");
  if (f.flag("add_special", false))
    throw RequestError(400, "add_special", "'add_special' is not supported: the model's texts start with no token");
  return {Fields::text(f["content"], "content", limits.max_prompt_bytes), f.flag("with_pieces", false)};
}

std::vector<TokenId> parse_detokenize(const std::string& body, const RequestLimits& limits, int64_t vocab_size) {
  Fields f(body);
  f.only({"tokens"});
  if (!f.has("tokens") || !f["tokens"].is_array()) throw RequestError(400, "tokens", "'tokens' must be a list of ids");
  if (f["tokens"].empty()) return {};
  return token_ids(f["tokens"], "tokens", limits, vocab_size);
}

namespace {

// A text ("prompt", with an optional "speaker") or token ids ("tokens"), exactly one of them.
AttentionRequest attention_input(const Fields& f, const RequestLimits& limits, int64_t vocab_size) {
  AttentionRequest r;
  if (f.has("tokens") == f.has("prompt"))
    throw RequestError(400, "prompt", "give either 'prompt' (a text) or 'tokens' (token ids), not both");
  if (f.has("prompt")) {
    r.prompt = Fields::text(f["prompt"], "prompt", limits.max_prompt_bytes);
    r.speaker = f.text("speaker", "", 256);
    if (r.prompt.empty() && r.speaker.empty())
      throw RequestError(400, "prompt", "'prompt' is empty: there is no token to attend");
    return r;
  }
  if (!f["tokens"].is_array()) throw RequestError(400, "tokens", "'tokens' must be a non-empty list of token ids");
  r.tokens = token_ids(f["tokens"], "tokens", limits, vocab_size);
  return r;
}

}  // namespace

AttentionRequest parse_attention(const std::string& body, const RequestLimits& limits, int64_t vocab_size) {
  Fields f(body);
  f.only({"prompt", "speaker", "tokens"});
  return attention_input(f, limits, vocab_size);
}

int64_t max_attention_tokens(const ModelConfig& model) {
  const int64_t heads = std::max<int64_t>(1, model.layers * model.heads);
  const auto t = static_cast<int64_t>(std::sqrt(static_cast<double>(kMaxAttentionCells / heads)));
  return std::max<int64_t>(1, std::min<int64_t>(t, model.context));
}

TraceRequest parse_trace(const std::string& body, const RequestLimits& limits, const ModelConfig& model) {
  Fields f(body);
  f.only({"prompt", "speaker", "tokens", "layer", "head"});
  TraceRequest r;
  r.input = attention_input(f, limits, model.vocab_size);
  r.layer = f.integer("layer", 0, 0, model.layers - 1);
  r.head = f.integer("head", 0, 0, model.heads - 1);
  return r;
}

const std::vector<std::string> kAcceptedFields = {"user", "cache_prompt", "id_slot", "stream_options"};

}  // namespace dracarys
