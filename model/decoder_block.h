// One decoder block (pre-norm):  x + Attention(LayerNorm(x)),  then  x + FeedForward(LayerNorm(x)).
#pragma once

#include <torch/torch.h>

#include "model/attention.h"

namespace dracarys {

// Position-wise feed-forward: Linear(d_model -> d_ff), GELU or ReLU², Linear(d_ff -> d_model), dropout.
class FeedForwardImpl : public torch::nn::Module {
 public:
  explicit FeedForwardImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);
  // one position of B: X, out [B, d_model] (decode_step.cpp); w holds this block's packed products
  void decode_batch(const float* X, int64_t B, const DecodeWeights::Block& w, float* out);
  void init_weights(double residual_std);  // model/init.h; residual_std for the down projection

 private:
  Activation activation_;
  torch::nn::Linear up_{nullptr}, down_{nullptr};  // d_model -> d_ff -> d_model
  HashedDropout dropout_{nullptr};
};
TORCH_MODULE(FeedForward);

class DecoderBlockImpl : public torch::nn::Module {
 public:
  explicit DecoderBlockImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, LayerKVCache* cache = nullptr, AttentionTrace* trace = nullptr,
                        Kernels kernels = Kernels::kFast);
  // One position's residual streams of B sequences, X: [B, d_model], updated in place
  // (decode_step.cpp); caches[b] is sequence b's.
  void decode_batch(float* X, LayerKVCache* const* caches, int64_t B, const DecodeWeights::Block& w);
  void init_weights(double residual_std);  // attention, then feed-forward; layer norms keep 1 and 0

 private:
  torch::nn::LayerNorm ln_attn_{nullptr}, ln_ff_{nullptr};
  CausalSelfAttention attn_{nullptr};
  FeedForward ff_{nullptr};
};
TORCH_MODULE(DecoderBlock);

}  // namespace dracarys
