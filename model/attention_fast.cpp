// The fast attention: the same arithmetic as the reference in attention.cpp, arranged for a
// small CPU. Heads are folded into the batch ([B·H, T, d_k]) so that every (sequence, head) pair
// is one matrix of a batched product, and the scale and the causal mask ride in the same
// product (baddbmm: mask + scale·Q·Kᵀ). Generation's one-token step is in decode_step.cpp.
#include "model/attention.h"

#include <cmath>

namespace dracarys {

torch::Tensor CausalSelfAttentionImpl::forward_fast(const torch::Tensor& x, LayerKVCache* cache) {
  const int64_t B = x.size(0), T = x.size(1), d = d_model_, H = heads_, dk = head_dim_;
  // One [B, T, 3d] product holds Q, K and V for every head; lay it out as [3, B·H, T, d_k]
  // so each of the three is one batch of per-head matrices.
  auto qkv = qkv_(x).view({B, T, 3, H, dk}).permute({2, 0, 3, 1, 4}).reshape({3, B * H, T, dk});
  auto q = qkv[0], k = qkv[1], v = qkv[2];

  const int64_t past = cache ? cache->length : 0;
  if (qk_norm_ || rotary_) q = normalise_and_rotate(q, past), k = normalise_and_rotate(k, past);
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
  auto weights = torch::softmax(scores, -1);           // each row: one head's attention filter for one query
  auto heads = torch::bmm(attn_dropout_(weights), v);  // [B·H, T, d_k]
  // Heads side by side again: [B, T, H·d_k]
  auto y = heads.view({B, H, T, dk}).transpose(1, 2).reshape({B, T, d});
  return resid_dropout_(proj_(y));
}

}  // namespace dracarys
