#include "model/attention.h"

#include "model/init.h"
#include "model/rotary.h"

#include <cmath>
#include <limits>

namespace dracarys {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelConfig& cfg)
    : heads_(cfg.heads),
      head_dim_(cfg.head_dim()),
      d_model_(cfg.d_model),
      context_(cfg.context),
      qk_norm_(cfg.qk_norm),
      rotary_(cfg.positional == PositionalKind::Rotary) {
  qkv_ = register_module("qkv", torch::nn::Linear(cfg.d_model, 3 * cfg.d_model));
  proj_ = register_module("proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
  attn_dropout_ = register_module("attn_dropout", HashedDropout(cfg.dropout));
  resid_dropout_ = register_module("resid_dropout", HashedDropout(cfg.dropout));
  // Added to the scores before the softmax: exp(-inf) = 0, so a position never sees its future.
  causal_mask_ = register_buffer(
      "causal_mask", torch::full({cfg.context, cfg.context}, -std::numeric_limits<float>::infinity()).triu(1));
  if (rotary_) {
    auto tables = rotary_tables(cfg.context, head_dim_);
    rotary_cos_ = register_buffer("rotary_cos", tables.cos);
    rotary_sin_ = register_buffer("rotary_sin", tables.sin);
  }
}

torch::Tensor CausalSelfAttentionImpl::normalise(const torch::Tensor& x) {
  return x * torch::rsqrt(x.square().mean(-1, /*keepdim=*/true) + kNormEps);
}

torch::Tensor CausalSelfAttentionImpl::normalise_and_rotate(torch::Tensor x, int64_t past) const {
  if (qk_norm_) x = normalise(x);
  if (rotary_) {
    const int64_t T = x.size(-2);
    x = rotate(x, rotary_cos_.narrow(0, past, T), rotary_sin_.narrow(0, past, T));
  }
  return x;
}

void CausalSelfAttentionImpl::init_weights(double residual_std) {
  init::linear(qkv_, init::kStd);
  init::linear(proj_, residual_std);
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, LayerKVCache* cache, AttentionTrace* trace,
                                               Kernels kernels) {
  // The boxes a reader inspects come from the reference, box by box.
  const bool reference = kernels == Kernels::kReference || trace != nullptr;
  return reference ? forward_reference(x, cache, trace) : forward_fast(x, cache);
}

// The diagram, box by box. Shapes: B sequences, T new positions, H heads of d_k each.
torch::Tensor CausalSelfAttentionImpl::forward_reference(const torch::Tensor& x, LayerKVCache* cache,
                                                         AttentionTrace* trace) {
  const int64_t B = x.size(0), T = x.size(1), H = heads_, dk = head_dim_;

  // Q, K and V projections (one matrix multiply for the three), split into heads: [B, H, T, d_k]
  auto qkv = qkv_(x).view({B, T, 3, H, dk});
  const auto q_projected = qkv.select(2, 0).transpose(1, 2);
  const auto k_projected = qkv.select(2, 1).transpose(1, 2);
  auto v = qkv.select(2, 2).transpose(1, 2);
  const int64_t past = cache ? cache->length : 0;

  // normalise Q and K (qk_norm): each head's query and key vectors scaled to unit RMS
  auto q = qk_norm_ ? normalise(q_projected) : q_projected;
  auto k = qk_norm_ ? normalise(k_projected) : k_projected;
  const auto q_normed = q, k_normed = k;
  // rotate Q and K (rotary positions): the vector at position p turns by p·θ (model/rotary.h)
  if (rotary_) {
    auto cos = rotary_cos_.narrow(0, past, T), sin = rotary_sin_.narrow(0, past, T);
    q = rotate(q, cos, sin), k = rotate(k, cos, sin);
  }
  if (trace) trace->input = x, trace->q = q_projected, trace->k = k_projected, trace->v = v;
  if (trace && qk_norm_) trace->q_normed = q_normed, trace->k_normed = k_normed;
  if (trace && rotary_) trace->q_rotated = q, trace->k_rotated = k;

  // With a cache, the new keys and values join those of the positions seen before.
  if (cache) {
    cache->append(k.reshape({B * H, T, dk}), v.reshape({B * H, T, dk}), context_);
    k = cache->keys().view({B, H, past + T, dk});
    v = cache->values().view({B, H, past + T, dk});
  }

  // scores = Q·Kᵀ: how well each query matches each key: [B, H, T, T_keys]
  auto scores = torch::matmul(q, k.transpose(-2, -1));
  // scaled by 1/√d_k, so the softmax does not saturate as d_k grows
  auto scaled = scores / std::sqrt(static_cast<double>(dk));
  // causal mask: query t (absolute position past + t) sees keys 0..past + t only
  auto masked = scaled + causal_mask_.narrow(0, past, T).narrow(1, 0, past + T);
  // softmax over the keys: each row is one head's attention filter
  auto filter = torch::softmax(masked, -1);
  // filter · V: each position's mix of the values it attends to: [B, H, T, d_k]
  auto filtered = torch::matmul(attn_dropout_(filter), v);
  // heads concatenated: [B, T, H·d_k]
  auto concat = filtered.transpose(1, 2).reshape({B, T, H * dk});
  // output projection
  auto output = proj_(concat);
  if (trace) {
    trace->scores = scores, trace->scaled = scaled, trace->masked = masked, trace->filter = filter;
    trace->filtered = filtered, trace->concat = concat, trace->output = output;
  }
  return resid_dropout_(output);
}

}  // namespace dracarys
