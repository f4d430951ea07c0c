// Multi-head causal self-attention, written out by hand.
//
//   x ─► Q, K, V projections ─► [normalise Q, K] ─► [rotate Q, K]
//     ─► per head: softmax(Q·Kᵀ/√d_k + causal mask) ─► dropout ─► ·V
//     ─► heads concatenated ─► output projection
//
// The boxes in brackets are options of the model's config: QK-norm (qk_norm) scales each head's
// query and key vectors to unit RMS; rotary positions (positional = rope) turn them by their
// position (model/rotary.h).
//
// The softmax rows are each head's "attention filter": row t says how much position t
// draws from each position ≤ t. forward() can hand back every box for inspection
// (model/attention_trace.h).
//
// Two implementations of the same arithmetic: the reference (attention.cpp), one statement per
// box of the diagram in [batch, heads, T, d_k] layout, which --attention-map draws from; and
// the fast one (attention_fast.cpp), heads folded into the batch with the scale and the mask
// fused into one product. Generation's one-token step, decode_batch, is a third arrangement
// (decode_step.cpp). tests/test_model.cpp checks that they agree in outputs and gradients.
#pragma once

#include <torch/torch.h>

#include "model/attention_trace.h"
#include "model/config.h"
#include "model/decode_weights.h"
#include "model/dropout.h"
#include "model/kv_cache.h"

namespace dracarys {

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const ModelConfig& cfg);

  // x: [batch, T, d_model] -> [batch, T, d_model].
  // cache: when given, x holds positions [cache->length, cache->length + T); their keys and
  //        values are appended and attention spans the cached positions too.
  // trace: when given, receives every box of the layer (from the reference, whatever `kernels`
  //        says); its `residual` is the caller's to fill.
  // kernels: which of the two implementations runs (the model's setting, model/config.h).
  torch::Tensor forward(const torch::Tensor& x, LayerKVCache* cache = nullptr, AttentionTrace* trace = nullptr,
                        Kernels kernels = Kernels::kFast);
  torch::Tensor forward_reference(const torch::Tensor& x, LayerKVCache* cache, AttentionTrace* trace);
  torch::Tensor forward_fast(const torch::Tensor& x, LayerKVCache* cache);
  // Generation's fast step: forward() for one new position of each of B sequences, on plain
  // arrays (see TransformerImpl::decode_batch). X: [B, d_model] -> out: [B, d_model]; appends to
  // each sequence's cache, caches[b]; w holds this block's packed products.
  void decode_batch(const float* X, LayerKVCache* const* caches, int64_t B, const DecodeWeights::Block& w, float* out);
  // Initial weights (model/init.h); residual_std for the output projection.
  void init_weights(double residual_std);

  // QK-norm's box: each vector along the last dimension divided by its root mean square.
  static torch::Tensor normalise(const torch::Tensor& x);
  static constexpr double kNormEps = 1e-6;

 private:
  // The optional boxes between the projections and the scores, on Q or K of the T positions
  // from `past` on, in any layout whose last two dimensions are [T, d_k].
  torch::Tensor normalise_and_rotate(torch::Tensor x, int64_t past) const;

  int64_t heads_, head_dim_, d_model_, context_;
  bool qk_norm_, rotary_;
  torch::nn::Linear qkv_{nullptr};   // Q, K and V projections fused into one matrix multiply
  torch::nn::Linear proj_{nullptr};  // output projection after the heads are concatenated
  HashedDropout attn_dropout_{nullptr}, resid_dropout_{nullptr};  // model/dropout.h
  torch::Tensor causal_mask_;              // [context, context]: 0 on and below the diagonal, -inf above
  torch::Tensor rotary_cos_, rotary_sin_;  // rotary positions only: [context, d_k/2] each
};
TORCH_MODULE(CausalSelfAttention);

}  // namespace dracarys
