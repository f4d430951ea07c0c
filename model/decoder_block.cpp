#include "model/decoder_block.h"

#include "model/init.h"

namespace dracarys {

FeedForwardImpl::FeedForwardImpl(const ModelConfig& cfg) : activation_(cfg.activation) {
  up_ = register_module("up", torch::nn::Linear(cfg.d_model, cfg.d_ff));
  down_ = register_module("down", torch::nn::Linear(cfg.d_ff, cfg.d_model));
  dropout_ = register_module("dropout", HashedDropout(cfg.dropout));
}

void FeedForwardImpl::init_weights(double residual_std) {
  init::linear(up_, init::kStd);
  init::linear(down_, residual_std);
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  auto h = up_(x);  // [.., d_ff]
  // Exact (erf) GELU: measured faster than the tanh approximation in this LibTorch build.
  // ReLU²: max(0, h)², the speedrun's choice.
  h = activation_ == Activation::Gelu ? torch::gelu(h) : torch::relu(h).square();
  return dropout_(down_(h));
}

DecoderBlockImpl::DecoderBlockImpl(const ModelConfig& cfg) {
  ln_attn_ = register_module("ln_attn", torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.d_model})));
  attn_ = register_module("attn", CausalSelfAttention(cfg));
  ln_ff_ = register_module("ln_ff", torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.d_model})));
  ff_ = register_module("ff", FeedForward(cfg));
}

void DecoderBlockImpl::init_weights(double residual_std) {
  attn_->init_weights(residual_std);
  ff_->init_weights(residual_std);
}

torch::Tensor DecoderBlockImpl::forward(const torch::Tensor& x, LayerKVCache* cache, AttentionTrace* trace,
                                        Kernels kernels) {
  if (trace) trace->residual = x;
  auto h = x + attn_->forward(ln_attn_(x), cache, trace, kernels);
  return h + ff_(ln_ff_(h));
}

}  // namespace dracarys
