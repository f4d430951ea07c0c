// The decoder-only transformer, top to bottom as in the diagram:
//
//   tokens ─► token embedding (×√d_model) ─► + positional encoding ─► dropout
//          ─► N × DecoderBlock (attention, feed-forward) ─► final LayerNorm
//          ─► decoder head (logits over the vocabulary; tied to the embedding by default)
//          ─► [soft cap: cap · tanh(logits / cap)]
//
// With rotary positions there is no table to add: attention turns Q and K instead.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <vector>

#include "model/config.h"
#include "model/decode_weights.h"
#include "model/decoder_block.h"
#include "model/dropout.h"
#include "model/positional_encoding.h"

namespace dracarys {

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const ModelConfig& cfg);

  // tokens: [batch, T] int64 -> logits [batch, T, vocab_size].
  // cache: incremental decoding; tokens continue the cached positions.
  // traces: when given, receives every layer's attention boxes (model/attention_trace.h); its
  //         filters are the attention weights, traces[layer].filter: [batch, heads, T, T_keys].
  torch::Tensor forward(const torch::Tensor& tokens, KVCache* cache = nullptr,
                        std::vector<AttentionTrace>* traces = nullptr);

  // Generation's fast step, beside forward() as the reference: the logits [vocab] of one new
  // token of one sequence at position cache.length(), whose keys and values it appends. With a
  // single row, forward()'s every Linear is a GEMM that packs its whole weight matrix to use
  // each weight once; here the whole step runs on plain float arrays with matrix-vector loops
  // that read each weight once (model/decode_step.cpp, model/systems/decode_kernels.h). Under the
  // reference kernels, or on a device other than the CPU, it is forward() with the cache. Eval mode, no autograd (call
  // under torch::NoGradGuard). tests/test_model.cpp checks it against forward().
  torch::Tensor decode_one(int64_t token, KVCache& cache);
  // The same step for B sequences at once, token b continuing caches[b]: logits [B, vocab]. Each
  // weight is read once for all of them, and sequence b's logits are bit-equal to its
  // decode_one (each product's rows are summed alike). The server's continuous batching.
  torch::Tensor decode_batch(const std::vector<int64_t>& tokens, KVCache* const* caches);

  // GPT-2 style initial weights, module by module (model/init.h); the constructor calls it.
  void init_weights();

  // Which code runs (model/config.h's Kernels): the fast attention and one-token step, or the
  // reference box by box. Set once, where the model is built or loaded.
  void set_kernels(Kernels kernels) { kernels_ = kernels; }
  Kernels kernels() const { return kernels_; }

  // How the one-token step holds the product weights (model/decode_weights.h). q8 also writes
  // what the int8 weights stand for back into the model's own weights, so that forward() (and
  // so --score) runs the same weights as generation. Set once, after loading.
  void set_weight_format(WeightFormat format);
  WeightFormat weight_format() const { return weight_format_; }

  KVCache make_cache() const { return KVCache{std::vector<LayerKVCache>(cfg_.layers)}; }
  const ModelConfig& config() const { return cfg_; }
  // Every dropout of the model at rate p from now on (the config's rate is where it starts).
  void set_dropout(double p);
  // Whether a positional table is added to the embeddings (not with rotary positions).
  bool adds_positions() const { return cfg_.positional != PositionalKind::Rotary; }
  // The decoder head's weight: the embedding matrix itself when tied.
  torch::Tensor head_weight() const;

 private:
  ModelConfig cfg_;
  Kernels kernels_ = Kernels::kFast;
  torch::nn::Embedding embed_{nullptr};
  PositionalEncoding pos_{nullptr};
  HashedDropout dropout_{nullptr};  // model/dropout.h
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::LayerNorm ln_final_{nullptr};
  torch::nn::Linear head_{nullptr};  // only when the head is not tied

  // The one-token step's packed weights: packed at first use, and again after a weight changed.
  std::shared_ptr<const DecodeWeights> decode_weights();
  WeightFormat weight_format_ = WeightFormat::kF32;
  std::mutex decode_weights_mutex_;
  std::shared_ptr<const DecodeWeights> decode_weights_;
};
TORCH_MODULE(Transformer);

// One sequence of token ids as the model's input: [1, T] int64 on `device`.
torch::Tensor one_sequence(const std::vector<int64_t>& ids, const torch::Device& device = torch::kCPU);

}  // namespace dracarys
