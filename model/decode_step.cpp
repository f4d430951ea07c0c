// Generation's fast step: one new token of each of B sequences through the whole model, on plain
// float arrays. The same boxes as forward(), in the same order, with the loops of
// decode_kernels.h:
//
//   token ─► embedding·√d_model + position ─► N × (x += Attention(LN(x)); x += FF(LN(x)))
//         ─► LN ─► decoder head
//
// Each sequence keeps its own residual stream and KV cache; the matrix products take all B
// streams at once (model/systems/packed_matmul.h: weights packed once, tiles of outputs held in
// registers), so each weight is read once per step for all of them (the server's continuous
// batching), and every output is summed in one order whatever the batch, so a sequence's
// numbers do not depend on who else is in it. forward() stays the reference;
// tests/test_model.cpp checks this step against it.
#include "model/rotary.h"
#include "model/systems/decode_kernels.h"
#include "model/systems/packed_matmul.h"
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

// LayerNorm of each of the B rows of X: [B, n] -> Y: [B, n] (Y may be X).
void layer_norm(const torch::nn::LayerNorm& ln, const float* X, float* Y, int64_t n, int64_t B) {
  for (int64_t b = 0; b < B; ++b)
    kernels::layer_norm(X + b * n, data(ln->weight), data(ln->bias), ln->options.eps(), Y + b * n, n);
}

// Y = X·Wᵀ + bias for B rows of X: [B, cols] -> Y: [B, rows], W the Linear's weight packed.
void linear(const kernels::PackedMatrix& W, const torch::nn::Linear& l, const float* X, float* Y, int64_t B) {
  kernels::matmul_packed(W, l->bias.defined() ? data(l->bias) : nullptr, X, Y, B);
}

// The step's working arrays. They are allocated by a thread's first step and reused by every
// later one, one set per thread, so concurrent generations never share them.
struct Scratch {
  std::vector<float> x;       // [B, d_model] the residual streams
  std::vector<float> normed;  // [B, d_model] LayerNorm(x)
  std::vector<float> branch;  // [B, d_model] a sublayer's output, before it is added to x
  std::vector<float> qkv;     // [B, 3, heads, d_k] each new position's query, key and value
  std::vector<float> heads;   // [B, heads, d_k] each head's weighted sum of values
  std::vector<float> scores;  // [context] one head's attention filter
  std::vector<float> hidden;  // [B, d_ff] the feed-forward's inner layer
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

void CausalSelfAttentionImpl::decode_batch(const float* X, LayerKVCache* const* caches, int64_t B,
                                           const DecodeWeights::Block& w, float* out) {
  const int64_t d = d_model_, H = heads_, dk = head_dim_;
  // Q, K and V projections of every sequence: [B, 3, H, d_k]
  Scratch& s = scratch();
  float* qkv = room_for(s.qkv, B * 3 * d);
  linear(w.qkv, qkv_, X, qkv, B);
  float* heads = room_for(s.heads, B * d);
  float* scores = room_for(s.scores, context_);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for (int64_t b = 0; b < B; ++b) {
    LayerKVCache& cache = *caches[b];
    float *q = qkv + b * 3 * d, *k = q + d, *v = k + d;
    // normalise, then rotate each head's query and key (the config's optional boxes)
    const int64_t position = cache.length;
    for (int64_t h = 0; h < H; ++h)
      for (float* vec : {q + h * dk, k + h * dk}) {
        if (qk_norm_) kernels::rms_normalise(vec, dk, kNormEps);
        if (rotary_) rotate_one(vec, data(rotary_cos_) + position * dk / 2, data(rotary_sin_) + position * dk / 2, dk);
      }
    cache.append_one(k, v, H, dk, context_);
    // Per head: softmax(K·q/√d_k)·V over every cached position (the newest sees them all: no mask)
    const int64_t room = cache.k.size(1);  // the cache's rows per head: [H, room, d_k]
    for (int64_t h = 0; h < H; ++h)
      kernels::attend_one(q + h * dk, data(cache.k) + h * room * dk, data(cache.v) + h * room * dk, cache.length, dk,
                          scale, scores, heads + b * d + h * dk);
  }
  // heads side by side, then the output projection
  linear(w.proj, proj_, heads, out, B);
}

void FeedForwardImpl::decode_batch(const float* X, int64_t B, const DecodeWeights::Block& w, float* out) {
  const int64_t d_ff = up_->weight.size(0);
  float* hidden = room_for(scratch().hidden, B * d_ff);
  linear(w.up, up_, X, hidden, B);
  if (activation_ == Activation::Gelu)
    kernels::gelu(hidden, B * d_ff);
  else
    kernels::relu2(hidden, B * d_ff);
  linear(w.down, down_, hidden, out, B);
}

void DecoderBlockImpl::decode_batch(float* X, LayerKVCache* const* caches, int64_t B, const DecodeWeights::Block& w) {
  const int64_t d = ln_attn_->weight.size(0);
  Scratch& s = scratch();
  float* normed = room_for(s.normed, B * d);
  float* branch = room_for(s.branch, B * d);
  // x + Attention(LayerNorm(x))
  layer_norm(ln_attn_, X, normed, d, B);
  attn_->decode_batch(normed, caches, B, w, branch);
  for (int64_t i = 0; i < B * d; ++i) X[i] += branch[i];
  // x + FeedForward(LayerNorm(x))
  layer_norm(ln_ff_, X, normed, d, B);
  ff_->decode_batch(normed, B, w, branch);
  for (int64_t i = 0; i < B * d; ++i) X[i] += branch[i];
}

torch::Tensor TransformerImpl::decode_one(int64_t token, KVCache& cache) {
  KVCache* caches[] = {&cache};
  return decode_batch({token}, caches)[0];
}

torch::Tensor TransformerImpl::decode_batch(const std::vector<int64_t>& tokens, KVCache* const* caches) {
  const auto B = static_cast<int64_t>(tokens.size());
  const int64_t d = cfg_.d_model;
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(caches[b]->length() < cfg_.context, "sequence of ", caches[b]->length() + 1,
                " tokens exceeds the context of ", cfg_.context);
    TORCH_CHECK(tokens[b] >= 0 && tokens[b] < cfg_.vocab_size, "token ", tokens[b], " is outside the vocabulary");
    if (caches[b]->layers.size() != blocks_->size()) caches[b]->layers.resize(blocks_->size());
  }
  const auto& head = head_weight();
  const bool loops = kernels_ == Kernels::kFast && head.device().is_cpu() && head.scalar_type() == torch::kFloat;
  if (!loops) {  // the reference, or a device the loops are not written for: forward() per sequence
    std::vector<torch::Tensor> rows;
    for (int64_t b = 0; b < B; ++b) rows.push_back(forward(one_sequence({tokens[b]}, head.device()), caches[b])[0][0]);
    return torch::stack(rows);
  }

  // token embedding ·√d_model + positional encoding: the residual streams x, [B, d_model]
  float* X = room_for(scratch().x, B * d);
  const auto scale = static_cast<float>(std::sqrt(static_cast<double>(d)));
  for (int64_t b = 0; b < B; ++b) {
    const float* embedding = data(embed_->weight) + tokens[b] * d;
    float* x = X + b * d;
    for (int64_t i = 0; i < d; ++i) x[i] = embedding[i] * scale;
    if (adds_positions()) {
      const float* encoding = pos_(caches[b]->length(), 1).data_ptr<float>();
      for (int64_t i = 0; i < d; ++i) x[i] += encoding[i];
    }
  }

  const auto packed = decode_weights();
  std::vector<LayerKVCache*> layer_caches(B);
  for (size_t l = 0; l < blocks_->size(); ++l) {
    for (int64_t b = 0; b < B; ++b) layer_caches[b] = &caches[b]->layers[l];
    blocks_->ptr<DecoderBlockImpl>(l)->decode_batch(X, layer_caches.data(), B, packed->blocks[l]);
  }

  // final LayerNorm, then the decoder head: logits [B, vocab]
  layer_norm(ln_final_, X, X, d, B);
  auto logits = torch::empty({B, cfg_.vocab_size});
  kernels::matmul_packed(packed->head, nullptr, X, logits.data_ptr<float>(), B);
  if (cfg_.logit_softcap > 0)
    kernels::softcap(logits.data_ptr<float>(), B * cfg_.vocab_size, static_cast<float>(cfg_.logit_softcap));
  return logits;
}

std::shared_ptr<const DecodeWeights> TransformerImpl::decode_weights() {
  std::lock_guard<std::mutex> lock(decode_weights_mutex_);
  if (!decode_weights_ || !still_current(*decode_weights_))
    decode_weights_ = pack_decode_weights(*this, weight_format_);
  return decode_weights_;
}

void TransformerImpl::set_weight_format(WeightFormat format) {
  std::lock_guard<std::mutex> lock(decode_weights_mutex_);
  weight_format_ = format;
  decode_weights_ = pack_decode_weights(*this, format);
}

}  // namespace dracarys
