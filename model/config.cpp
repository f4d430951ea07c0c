#include "model/config.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace dracarys {

std::string to_string(PositionalKind kind) {
  return kind == PositionalKind::Sinusoidal ? "sinusoidal" : "learned";
}

PositionalKind positional_kind_from_string(const std::string& name) {
  if (name == "sinusoidal") return PositionalKind::Sinusoidal;
  if (name == "learned") return PositionalKind::Learned;
  throw std::invalid_argument("positional encoding must be 'sinusoidal' or 'learned', got '" + name + "'");
}

static void require_positive(const char* name, int64_t v) {
  if (v <= 0) throw std::invalid_argument(std::string(name) + " must be positive, got " + std::to_string(v));
}

void ModelConfig::validate() const {
  require_positive("layers", layers);
  require_positive("heads", heads);
  require_positive("d_model", d_model);
  require_positive("d_ff", d_ff);
  require_positive("context", context);
  require_positive("vocab_size", vocab_size);
  if (d_model % heads != 0)
    throw std::invalid_argument("d_model (" + std::to_string(d_model) + ") must be divisible by heads (" +
                                std::to_string(heads) + ")");
  if (!(dropout >= 0.0 && dropout < 1.0))
    throw std::invalid_argument("dropout must be in [0, 1), got " + std::to_string(dropout));
}

int64_t ModelConfig::parameter_count() const {
  const int64_t d = d_model;
  const int64_t per_block = 2 * d                 // layer norm before attention
                            + d * 3 * d + 3 * d   // Q, K, V projections
                            + d * d + d           // output projection
                            + 2 * d               // layer norm before feed-forward
                            + d * d_ff + d_ff     // feed-forward in
                            + d_ff * d + d;       // feed-forward out
  int64_t n = vocab_size * d + layers * per_block + 2 * d;  // embedding, blocks, final norm
  if (positional == PositionalKind::Learned) n += context * d;
  if (!tied_head) n += vocab_size * d;
  return n;
}

std::string ModelConfig::to_json() const {
  nlohmann::json j = {{"layers", layers},         {"heads", heads},         {"d_model", d_model},
                      {"d_ff", d_ff},             {"context", context},     {"vocab_size", vocab_size},
                      {"dropout", dropout},       {"positional", to_string(positional)},
                      {"tied_head", tied_head}};
  return j.dump();
}

ModelConfig ModelConfig::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("model config is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw std::invalid_argument("model config must be a JSON object");
  ModelConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    try {
      if (k == "layers") c.layers = it->get<int64_t>();
      else if (k == "heads") c.heads = it->get<int64_t>();
      else if (k == "d_model") c.d_model = it->get<int64_t>();
      else if (k == "d_ff") c.d_ff = it->get<int64_t>();
      else if (k == "context") c.context = it->get<int64_t>();
      else if (k == "vocab_size") c.vocab_size = it->get<int64_t>();
      else if (k == "dropout") c.dropout = it->get<double>();
      else if (k == "positional") c.positional = positional_kind_from_string(it->get<std::string>());
      else if (k == "tied_head") c.tied_head = it->get<bool>();
      else throw std::invalid_argument("unknown model config key '" + k + "'");
    } catch (const nlohmann::json::exception&) {
      throw std::invalid_argument("model config key '" + k + "' has the wrong type");
    }
  }
  c.validate();
  return c;
}

bool ModelConfig::operator==(const ModelConfig& o) const {
  return layers == o.layers && heads == o.heads && d_model == o.d_model && d_ff == o.d_ff &&
         context == o.context && vocab_size == o.vocab_size && dropout == o.dropout &&
         positional == o.positional && tied_head == o.tied_head;
}

}  // namespace dracarys
