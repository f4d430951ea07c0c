// Generation's fast step: one new token of one sequence through the whole model, on plain float
// arrays. The same boxes as forward(), in the same order, with the loops of decode_kernels.h:
//
//   token ─► embedding·√d_model + position ─► N × (x += Attention(LN(x)); x += FF(LN(x)))
//         ─► LN ─► decoder head
//
// forward() stays the reference; tests/test_model.cpp checks this step against it.
#include "model/rotary.h"
#include "model/systems/decode_kernels.h"
#include "model/transformer.h"

#include <cmath>
#include <vector>

namespace dracarys {

namespace {

// A weight as a plain array. Parameters are contiguous float tensors on the CPU; anything else
// is refused rather than read wrongly.
const float* data(const torch::Tensor& t) {
  TORCH_CHECK(t.is_contiguous() && t.scalar_type() == torch::kFloat && t.device().is_cpu(),
              "decode_one needs contiguous float weights on the CPU");
  return t.data_ptr<float>();
}

void layer_norm(const torch::nn::LayerNorm& ln, const float* x, float* y, int64_t n) {
  kernels::layer_norm(x, data(ln->weight), data(ln->bias), ln->options.eps(), y, n);
}

// The step's working arrays. They are allocated by a thread's first token and reused by every
// later one, one set per thread, so concurrent generations (the server's) never share them.
struct Scratch {
  std::vector<float> x;       // [d_model] the residual stream
  std::vector<float> normed;  // [d_model] LayerNorm(x)
  std::vector<float> branch;  // [d_model] a sublayer's output, before it is added to x
  std::vector<float> qkv;     // [3, heads, d_k] the new position's query, key and value
  std::vector<float> heads;   // [heads, d_k] each head's weighted sum of values
  std::vector<float> scores;  // [context] one head's attention filter
  std::vector<float> hidden;  // [d_ff] the feed-forward's inner layer
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// `buffer` as an array of n floats; it grows only the first time a size is needed.
float* room_for(std::vector<float>& buffer, int64_t n) {
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(n);
  return buffer.data();
}

}  // namespace

void CausalSelfAttentionImpl::decode_one(const float* x, LayerKVCache& cache, float* out) {
  const int64_t d = d_model_, H = heads_, dk = head_dim_;
  // Q, K and V projections: [3, H, d_k]
  Scratch& s = scratch();
  float* qkv = room_for(s.qkv, 3 * d);
  kernels::matvec(data(qkv_->weight), data(qkv_->bias), x, qkv, 3 * d, d);
  float *q = qkv, *k = q + d, *v = k + d;
  // normalise, then rotate each head's query and key (the config's optional boxes)
  const int64_t position = cache.length;
  for (int64_t h = 0; h < H; ++h)
    for (float* vec : {q + h * dk, k + h * dk}) {
      if (qk_norm_) kernels::rms_normalise(vec, dk, kNormEps);
      if (rotary_) rotate_one(vec, data(rotary_cos_) + position * dk / 2, data(rotary_sin_) + position * dk / 2, dk);
    }
  cache.append_one(k, v, H, dk, context_);

  // Per head: softmax(K·q/√d_k)·V over every cached position (the newest sees them all: no mask)
  float* heads = room_for(s.heads, d);
  float* scores = room_for(s.scores, context_);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  const int64_t room = cache.k.size(1);  // the cache's rows per head: [H, room, d_k]
  for (int64_t h = 0; h < H; ++h)
    kernels::attend_one(q + h * dk, data(cache.k) + h * room * dk, data(cache.v) + h * room * dk, cache.length, dk,
                        scale, scores, heads + h * dk);

  // heads side by side, then the output projection
  kernels::matvec(data(proj_->weight), data(proj_->bias), heads, out, d, d);
}

void FeedForwardImpl::decode_one(const float* x, float* out) {
  const int64_t d = up_->weight.size(1), d_ff = up_->weight.size(0);
  float* hidden = room_for(scratch().hidden, d_ff);
  kernels::matvec(data(up_->weight), data(up_->bias), x, hidden, d_ff, d);
  if (activation_ == Activation::Gelu)
    kernels::gelu(hidden, d_ff);
  else
    kernels::relu2(hidden, d_ff);
  kernels::matvec(data(down_->weight), data(down_->bias), hidden, out, d, d_ff);
}

void DecoderBlockImpl::decode_one(float* x, LayerKVCache& cache) {
  const int64_t d = ln_attn_->weight.size(0);
  Scratch& s = scratch();
  float* normed = room_for(s.normed, d);
  float* branch = room_for(s.branch, d);
  // x + Attention(LayerNorm(x))
  layer_norm(ln_attn_, x, normed, d);
  attn_->decode_one(normed, cache, branch);
  for (int64_t i = 0; i < d; ++i) x[i] += branch[i];
  // x + FeedForward(LayerNorm(x))
  layer_norm(ln_ff_, x, normed, d);
  ff_->decode_one(normed, branch);
  for (int64_t i = 0; i < d; ++i) x[i] += branch[i];
}

torch::Tensor TransformerImpl::decode_one(int64_t token, KVCache& cache) {
  const int64_t position = cache.length(), d = cfg_.d_model;
  TORCH_CHECK(position < cfg_.context, "sequence of ", position + 1, " tokens exceeds the context of ", cfg_.context);
  TORCH_CHECK(token >= 0 && token < cfg_.vocab_size, "token ", token, " is outside the vocabulary");
  const auto& head = head_weight();
  const bool loops = kernels_ == Kernels::kFast && head.device().is_cpu() && head.scalar_type() == torch::kFloat;
  if (!loops)  // the reference, or a device the loops are not written for
    return forward(one_sequence({token}, head.device()), &cache)[0][0];
  if (cache.layers.size() != blocks_->size()) cache.layers.resize(blocks_->size());

  // token embedding ·√d_model + positional encoding: the residual stream x, [d_model]
  float* x = room_for(scratch().x, d);
  const float* embedding = data(embed_->weight) + token * d;
  const auto scale = static_cast<float>(std::sqrt(static_cast<double>(d)));
  for (int64_t i = 0; i < d; ++i) x[i] = embedding[i] * scale;
  if (adds_positions()) {
    const float* encoding = pos_(position, 1).data_ptr<float>();
    for (int64_t i = 0; i < d; ++i) x[i] += encoding[i];
  }

  for (size_t i = 0; i < blocks_->size(); ++i) blocks_->ptr<DecoderBlockImpl>(i)->decode_one(x, cache.layers[i]);

  // final LayerNorm, then the decoder head: logits [vocab]
  layer_norm(ln_final_, x, x, d);
  auto logits = torch::empty({cfg_.vocab_size});
  kernels::matvec(data(head), nullptr, x, logits.data_ptr<float>(), cfg_.vocab_size, d);
  if (cfg_.logit_softcap > 0)
    kernels::softcap(logits.data_ptr<float>(), cfg_.vocab_size, static_cast<float>(cfg_.logit_softcap));
  return logits;
}

}  // namespace dracarys
