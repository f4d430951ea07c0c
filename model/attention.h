// Multi-head causal self-attention, written out by hand.
//
//   x ─► Q, K, V projections ─► per head: softmax(Q·Kᵀ/√d_k + causal mask) ─► dropout ─► ·V
//     ─► heads concatenated ─► output projection
//
// The softmax rows are each head's "attention filter": row t says how much position t
// draws from each position ≤ t. forward() can hand them back for inspection.
#pragma once

#include <torch/torch.h>

#include "model/config.h"

namespace dracarys {

// Keys and values of the positions already seen, for one layer. Lets generation feed one
// new token at a time instead of the whole sequence again.
struct LayerKVCache {
  torch::Tensor k, v;  // [batch·heads, context, head_dim], filled up to `length`
  int64_t length = 0;
};

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const ModelConfig& cfg);

  // x: [batch, T, d_model] -> [batch, T, d_model].
  // cache: when given, x holds positions [cache->length, cache->length + T); their keys and
  //        values are appended and attention spans the cached positions too.
  // weights_out: when given, receives the attention weights [batch, heads, T, T_keys].
  torch::Tensor forward(const torch::Tensor& x, LayerKVCache* cache = nullptr, torch::Tensor* weights_out = nullptr);
  // Generation's fast step: forward() for one new position of one sequence, x: [d_model] ->
  // [d_model], with matrix-vector products (see TransformerImpl::decode_one). Eval mode only.
  torch::Tensor decode_one(const torch::Tensor& x, LayerKVCache& cache);
  // Initial weights (model/init.h); residual_std for the output projection.
  void init_weights(double residual_std);

 private:
  int64_t heads_, head_dim_, d_model_, context_;
  torch::nn::Linear qkv_{nullptr};   // Q, K and V projections fused into one matrix multiply
  torch::nn::Linear proj_{nullptr};  // output projection after the heads are concatenated
  torch::nn::Dropout attn_dropout_{nullptr}, resid_dropout_{nullptr};
  torch::Tensor causal_mask_;  // [context, context]: 0 on and below the diagonal, -inf above
};
TORCH_MODULE(CausalSelfAttention);

}  // namespace dracarys
