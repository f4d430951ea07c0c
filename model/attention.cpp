#include "model/attention.h"

#include "model/init.h"

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

void CausalSelfAttentionImpl::init_weights(double residual_std) {
  init::linear(qkv_, init::kStd);
  init::linear(proj_, residual_std);
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, LayerKVCache* cache,
                                               torch::Tensor* weights_out) {
  const int64_t B = x.size(0), T = x.size(1), d = d_model_;
  // One [B, T, 3d] product; Q, K and V are its three column blocks (views, no copies).
  const int64_t H = heads_, dk = head_dim_;
  // One [B, T, 3d] product holds Q, K and V for every head; lay it out as [3, B·H, T, d_k]
  // so each of the three is one batch of per-head matrices.
  auto qkv = qkv_(x).view({B, T, 3, H, dk}).permute({2, 0, 3, 1, 4}).reshape({3, B * H, T, dk});
  auto q = qkv[0], k = qkv[1], v = qkv[2];

  int64_t past = 0;
  if (cache) {
    past = cache->length;
    TORCH_CHECK(past + T <= context_, "KV cache overflow: ", past, " + ", T, " positions > context ", context_);
    if (!cache->k.defined()) {
      cache->k = torch::empty({B * H, context_, dk}, x.options());
      cache->v = torch::empty({B * H, context_, dk}, x.options());
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
  const double scale = 1.0 / std::sqrt(static_cast<double>(dk));

  // scores = mask + Q·Kᵀ/√d_k for every (sequence, head) pair in one batched GEMM: [B·H, T, Tk]
  auto scores = torch::baddbmm(mask, q, k.transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
  auto weights = torch::softmax(scores, -1);  // each row: one head's attention filter for one query
  if (weights_out) *weights_out = weights.view({B, H, T, Tk});
  auto heads = torch::bmm(attn_dropout_(weights), v);  // [B·H, T, d_k]
  // Heads side by side again: [B, T, H·d_k]
  auto y = heads.view({B, H, T, dk}).transpose(1, 2).reshape({B, T, d});
  return resid_dropout_(proj_(y));
}

torch::Tensor CausalSelfAttentionImpl::decode_one(const torch::Tensor& x, LayerKVCache& cache) {
  const int64_t H = heads_, dk = head_dim_, past = cache.length;
  TORCH_CHECK(past < context_, "KV cache overflow: ", past, " + 1 positions > context ", context_);
  // Q, K and V of the new position, per head: [3, H, d_k]
  auto qkv = torch::addmv(qkv_->bias, qkv_->weight, x).view({3, H, dk});
  if (!cache.k.defined()) {
    cache.k = torch::empty({H, context_, dk}, x.options());
    cache.v = torch::empty({H, context_, dk}, x.options());
  }
  cache.k.select(1, past).copy_(qkv[1]);
  cache.v.select(1, past).copy_(qkv[2]);
  cache.length = past + 1;
  auto keys = cache.k.narrow(1, 0, past + 1), values = cache.v.narrow(1, 0, past + 1);  // [H, Tk, d_k]
  // The newest position sees every cached one: no mask. scores = K·q/√d_k: [H, Tk, 1]
  auto scores = torch::bmm(keys, qkv[0].unsqueeze(2)).mul_(1.0 / std::sqrt(static_cast<double>(dk)));
  auto weights = torch::softmax(scores, 1);
  auto heads = torch::bmm(values.transpose(1, 2), weights);  // [H, d_k, 1]: heads side by side
  return torch::addmv(proj_->bias, proj_->weight, heads.view({d_model_}));
}

}  // namespace dracarys
