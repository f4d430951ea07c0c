// The one description of a model's shape. Round-trips through JSON, validates itself.
#pragma once

#include <cstdint>
#include <string>

namespace dracarys {

// How the model knows where a token stands: a table added to the embeddings (sinusoidal, or
// learned), or rotary: each head's queries and keys turned by an angle that grows with the
// position, so that a query-key score depends on their distance only (model/rotary.h).
enum class PositionalKind { Sinusoidal, Learned, Rotary };

// The feed-forward block's non-linearity: GELU (GPT-2's), or ReLU² = max(0, x)² (the speedrun's).
enum class Activation { Gelu, Relu2 };

// Which code computes attention: the reference, box by box as in the diagram, or the fast one
// (the default). Same arithmetic; see model/attention.h.
enum class Kernels { kFast, kReference };
Kernels kernels_from_string(const std::string& name);  // "fast" or "reference"; throws std::invalid_argument

struct ModelConfig {
  int64_t layers = 4;         // N decoder blocks
  int64_t heads = 4;          // attention heads per block
  int64_t d_model = 256;      // width of the residual stream
  int64_t d_ff = 1024;        // hidden width of the feed-forward block
  int64_t context = 128;      // longest sequence the model sees at once
  int64_t vocab_size = 4096;  // tokens the embedding and the decoder head know
  double dropout = 0.0;       // on attention weights, residual branches and embeddings
  PositionalKind positional = PositionalKind::Sinusoidal;
  bool tied_head = true;  // decoder head reuses the token embedding's weight
  Activation activation = Activation::Gelu;
  bool qk_norm = false;        // each head's queries and keys scaled to unit RMS before Q·Kᵀ
  double logit_softcap = 0.0;  // > 0: logits = cap · tanh(logits / cap); 0: off
  bool zero_init = false;      // attention's output and the feed-forward's down projection start at 0

  // Upper bounds. A config may come from an untrusted file: these, and the byte limit on what
  // the config implies, are checked before anything is allocated.
  static constexpr int64_t kMaxLayers = 256, kMaxHeads = 256, kMaxDModel = 16384, kMaxDff = 65536;
  static constexpr int64_t kMaxContext = 16384, kMaxVocab = int64_t{1} << 20;
  static constexpr double kMaxModelBytes = 16.0 * (int64_t{1} << 30);  // weights and buffers, 16 GiB

  int64_t head_dim() const { return d_model / heads; }

  // Throws std::invalid_argument naming the first field that is wrong.
  void validate() const;

  // Parameters the model built from this config holds (a tied head counts once).
  int64_t parameter_count() const;
  // Floats in the model's buffers: each layer's causal mask and the sinusoid table.
  int64_t buffer_count() const;
  // Bytes of float32 weights and buffers: what building the model allocates.
  double model_bytes() const;

  std::string to_json() const;
  // Throws std::invalid_argument on malformed JSON, unknown keys or an invalid config.
  static ModelConfig from_json(const std::string& text);

  bool operator==(const ModelConfig& o) const;
  bool operator!=(const ModelConfig& o) const { return !(*this == o); }
};

std::string to_string(PositionalKind kind);
PositionalKind positional_kind_from_string(const std::string& name);  // "sinusoidal", "learned", "rope"
std::string to_string(Activation activation);
Activation activation_from_string(const std::string& name);  // "gelu", "relu2"

// The bounds of the few settings that are numbers rather than sizes.
constexpr double kMaxLogitSoftcap = 1e4;

}  // namespace dracarys
