#include "model/attention.h"

#include <cmath>
#include <limits>

namespace dracarys {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelConfig& cfg)
    : heads_(cfg.heads), head_dim_(cfg.head_dim()), d_model_(cfg.d_model), context_(cfg.context) {
  qkv_ = register_module("qkv", torch::nn::Linear(cfg.d_model, 3 * cfg.d_model));
  proj_ = register_module("proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
  attn_dropout_ = register_module("attn_dropout", torch::nn::Dropout(cfg.dropout));
  resid_dropout_ = register_module("resid_dropout", torch::nn::Dropout(cfg.dropout));
  // Added to the scores before the softmax: exp(-inf) = 0, so a position never sees its future.
  causal_mask_ = register_buffer(
      "causal_mask", torch::full({cfg.context, cfg.context}, -std::numeric_limits<float>::infinity()).triu(1));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, LayerKVCache* cache,
                                               torch::Tensor* weights_out) {
  const int64_t B = x.size(0), T = x.size(1), d = d_model_;
  // One [B, T, 3d] product; Q, K and V are its three column blocks (views, no copies).
  auto qkv = qkv_(x);
  auto q = qkv.narrow(2, 0, d);
  auto k = qkv.narrow(2, d, d);
  auto v = qkv.narrow(2, 2 * d, d);

  int64_t past = 0;
  if (cache) {
    past = cache->length;
    TORCH_CHECK(past + T <= context_, "KV cache overflow: ", past, " + ", T, " positions > context ", context_);
    if (!cache->k.defined()) {
      cache->k = torch::empty({B, context_, d}, x.options());
      cache->v = torch::empty({B, context_, d}, x.options());
    }
    cache->k.narrow(1, past, T).copy_(k);
    cache->v.narrow(1, past, T).copy_(v);
    cache->length = past + T;
    k = cache->k.narrow(1, 0, past + T);
    v = cache->v.narrow(1, 0, past + T);
  }
  const int64_t Tk = past + T;
  // Query t (absolute position past + t) may see keys 0..past + t.
  auto mask = causal_mask_.narrow(0, past, T).narrow(1, 0, Tk);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));

  std::vector<torch::Tensor> head_outputs, head_weights;
  head_outputs.reserve(heads_);
  for (int64_t h = 0; h < heads_; ++h) {
    // This head's slice of Q, K, V: strided views [B, T, d_k] that BLAS reads in place.
    auto qh = q.narrow(2, h * head_dim_, head_dim_);
    auto kh = k.narrow(2, h * head_dim_, head_dim_);
    auto vh = v.narrow(2, h * head_dim_, head_dim_);
    // scores = mask + Q·Kᵀ/√d_k, in one batched GEMM: [B, T, Tk]
    auto scores = torch::baddbmm(mask, qh, kh.transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
    auto weights = torch::softmax(scores, -1);
    if (weights_out) head_weights.push_back(weights);
    head_outputs.push_back(torch::bmm(attn_dropout_(weights), vh));  // [B, T, d_k]
  }
  if (weights_out) *weights_out = torch::stack(head_weights, 1);  // [B, heads, T, Tk]
  auto y = torch::cat(head_outputs, 2);                             // heads side by side: [B, T, d]
  return resid_dropout_(proj_(y));
}

}  // namespace dracarys
