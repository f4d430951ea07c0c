#include "model/config.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace dracarys {

std::string to_string(PositionalKind kind) {
  switch (kind) {
    case PositionalKind::Sinusoidal:
      return "sinusoidal";
    case PositionalKind::Learned:
      return "learned";
    case PositionalKind::Rotary:
      return "rope";
  }
  return "?";
}

PositionalKind positional_kind_from_string(const std::string& name) {
  if (name == "sinusoidal") return PositionalKind::Sinusoidal;
  if (name == "learned") return PositionalKind::Learned;
  if (name == "rope") return PositionalKind::Rotary;
  throw std::invalid_argument("positions must be 'sinusoidal', 'learned' or 'rope', got '" + name + "'");
}

std::string to_string(Activation activation) { return activation == Activation::Gelu ? "gelu" : "relu2"; }

Activation activation_from_string(const std::string& name) {
  if (name == "gelu") return Activation::Gelu;
  if (name == "relu2") return Activation::Relu2;
  throw std::invalid_argument("activation must be 'gelu' or 'relu2', got '" + name + "'");
}

Kernels kernels_from_string(const std::string& name) {
  if (name == "fast") return Kernels::kFast;
  if (name == "reference") return Kernels::kReference;
  throw std::invalid_argument("kernels must be 'fast' or 'reference', got '" + name + "'");
}

static void require_in_range(const char* name, int64_t v, int64_t most) {
  if (v <= 0) throw std::invalid_argument(std::string(name) + " must be positive, got " + std::to_string(v));
  if (v > most)
    throw std::invalid_argument(std::string(name) + " is " + std::to_string(v) + ", above the limit of " +
                                std::to_string(most));
}

void ModelConfig::validate() const {
  require_in_range("layers", layers, kMaxLayers);
  require_in_range("heads", heads, kMaxHeads);
  require_in_range("d_model", d_model, kMaxDModel);
  require_in_range("d_ff", d_ff, kMaxDff);
  require_in_range("context", context, kMaxContext);
  require_in_range("vocab_size", vocab_size, kMaxVocab);
  if (d_model % heads != 0)
    throw std::invalid_argument("d_model (" + std::to_string(d_model) + ") must be divisible by heads (" +
                                std::to_string(heads) + ")");
  if (!(dropout >= 0.0 && dropout < 1.0))
    throw std::invalid_argument("dropout must be in [0, 1), got " + std::to_string(dropout));
  if (!(logit_softcap >= 0.0 && logit_softcap <= kMaxLogitSoftcap))
    throw std::invalid_argument("logit_softcap must be 0 (off) or positive up to " +
                                std::to_string(static_cast<int64_t>(kMaxLogitSoftcap)) + ", got " +
                                std::to_string(logit_softcap));
  if (positional == PositionalKind::Rotary && head_dim() % 2 != 0)
    throw std::invalid_argument("rotary positions turn pairs of a head's dimensions: d_model / heads (" +
                                std::to_string(head_dim()) + ") must be even");
  if (model_bytes() > kMaxModelBytes)
    throw std::invalid_argument("this model would need " + std::to_string(static_cast<int64_t>(model_bytes() / 1e9)) +
                                " GB for its weights and attention masks, above the limit of " +
                                std::to_string(static_cast<int64_t>(kMaxModelBytes / 1e9)) + " GB");
}

int64_t ModelConfig::buffer_count() const {
  int64_t n = layers * context * context;  // causal masks
  if (positional == PositionalKind::Sinusoidal) n += context * d_model;
  if (positional == PositionalKind::Rotary) n += layers * context * head_dim();  // cos and sin, d_k/2 each
  return n;
}

double ModelConfig::model_bytes() const {
  return 4.0 * (static_cast<double>(parameter_count()) + static_cast<double>(buffer_count()));
}

int64_t ModelConfig::parameter_count() const {
  const int64_t d = d_model;
  const int64_t per_block = 2 * d                           // layer norm before attention
                            + d * 3 * d + 3 * d             // Q, K, V projections
                            + d * d + d                     // output projection
                            + 2 * d                         // layer norm before feed-forward
                            + d * d_ff + d_ff               // feed-forward in
                            + d_ff * d + d;                 // feed-forward out
  int64_t n = vocab_size * d + layers * per_block + 2 * d;  // embedding, blocks, final norm
  if (positional == PositionalKind::Learned) n += context * d;
  if (!tied_head) n += vocab_size * d;
  return n;
}

std::string ModelConfig::to_json() const {
  nlohmann::json j = {
      {"layers", layers},      {"heads", heads},           {"d_model", d_model}, {"d_ff", d_ff},
      {"context", context},    {"vocab_size", vocab_size}, {"dropout", dropout}, {"positional", to_string(positional)},
      {"tied_head", tied_head}};
  // Written only when they differ from the default, so that older readers still read the rest.
  if (activation != Activation::Gelu) j["activation"] = to_string(activation);
  if (qk_norm) j["qk_norm"] = true;
  if (logit_softcap > 0) j["logit_softcap"] = logit_softcap;
  if (zero_init) j["zero_init"] = true;
  return j.dump();
}

ModelConfig ModelConfig::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument("model config is not valid JSON (at byte " + std::to_string(e.byte) + ")");
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument("model config holds a number too large to read");
  }
  if (!j.is_object()) throw std::invalid_argument("model config must be a JSON object");
  ModelConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const auto wrong_type = [&k](const char* wanted) {
      return std::invalid_argument("model config key '" + k + "' must be " + wanted);
    };
    auto whole = [&]() {
      if (!it->is_number_integer()) throw wrong_type("a whole number");
      return it->get<int64_t>();
    };
    if (k == "layers")
      c.layers = whole();
    else if (k == "heads")
      c.heads = whole();
    else if (k == "d_model")
      c.d_model = whole();
    else if (k == "d_ff")
      c.d_ff = whole();
    else if (k == "context")
      c.context = whole();
    else if (k == "vocab_size")
      c.vocab_size = whole();
    else if (k == "dropout") {
      if (!it->is_number()) throw wrong_type("a number");
      c.dropout = it->get<double>();
    } else if (k == "positional") {
      if (!it->is_string()) throw wrong_type("a string");
      c.positional = positional_kind_from_string(it->get<std::string>());
    } else if (k == "tied_head" || k == "qk_norm" || k == "zero_init") {
      if (!it->is_boolean()) throw wrong_type("true or false");
      (k == "tied_head" ? c.tied_head : k == "qk_norm" ? c.qk_norm : c.zero_init) = it->get<bool>();
    } else if (k == "activation") {
      if (!it->is_string()) throw wrong_type("a string");
      c.activation = activation_from_string(it->get<std::string>());
    } else if (k == "logit_softcap") {
      if (!it->is_number()) throw wrong_type("a number");
      c.logit_softcap = it->get<double>();
    } else {
      throw std::invalid_argument("unknown model config key '" + k + "'");
    }
  }
  c.validate();
  return c;
}

bool ModelConfig::operator==(const ModelConfig& o) const {
  return layers == o.layers && heads == o.heads && d_model == o.d_model && d_ff == o.d_ff && context == o.context &&
         vocab_size == o.vocab_size && dropout == o.dropout && positional == o.positional && tied_head == o.tied_head &&
         activation == o.activation && qk_norm == o.qk_norm && logit_softcap == o.logit_softcap &&
         zero_init == o.zero_init;
}

}  // namespace dracarys
