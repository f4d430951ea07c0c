// The fast attention: the same arithmetic as the reference in attention.cpp, arranged for a
// small CPU. Heads are folded into the batch ([B·H, T, d_k]) so that every (sequence, head) pair
// is one matrix of a batched product, and the scale and the causal mask ride in the same
// product (baddbmm: mask + scale·Q·Kᵀ). decode_one is generation's one-token step.
#include "model/attention.h"

#include <cmath>

namespace dracarys {

torch::Tensor CausalSelfAttentionImpl::forward_fast(const torch::Tensor& x, LayerKVCache* cache,
                                                    torch::Tensor* weights_out) {
  const int64_t B = x.size(0), T = x.size(1), d = d_model_, H = heads_, dk = head_dim_;
  // One [B, T, 3d] product holds Q, K and V for every head; lay it out as [3, B·H, T, d_k]
  // so each of the three is one batch of per-head matrices.
  auto qkv = qkv_(x).view({B, T, 3, H, dk}).permute({2, 0, 3, 1, 4}).reshape({3, B * H, T, dk});
  auto q = qkv[0], k = qkv[1], v = qkv[2];

  const int64_t past = cache ? cache->length : 0;
  if (cache) {
    cache->append(k, v, context_);
    k = cache->keys();
    v = cache->values();
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
  const int64_t H = heads_, dk = head_dim_;
  // Q, K and V of the new position, per head: [3, H, d_k]
  auto qkv = torch::addmv(qkv_->bias, qkv_->weight, x).view({3, H, dk});
  cache.append(qkv[1].unsqueeze(1), qkv[2].unsqueeze(1), context_);
  auto keys = cache.keys(), values = cache.values();  // [H, Tk, d_k]
  // The newest position sees every cached one: no mask. scores = K·q/√d_k: [H, Tk, 1]
  auto scores = torch::bmm(keys, qkv[0].unsqueeze(2)).mul_(1.0 / std::sqrt(static_cast<double>(dk)));
  auto weights = torch::softmax(scores, 1);
  auto heads = torch::bmm(values.transpose(1, 2), weights);  // [H, d_k, 1]: heads side by side
  return torch::addmv(proj_->bias, proj_->weight, heads.view({d_model_}));
}

}  // namespace dracarys
