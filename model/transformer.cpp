#include "model/transformer.h"

#include "model/init.h"

#include <cmath>

namespace dracarys {

TransformerImpl::TransformerImpl(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  embed_ = register_module("embed", torch::nn::Embedding(cfg.vocab_size, cfg.d_model));
  pos_ = register_module("pos", PositionalEncoding(cfg));
  dropout_ = register_module("dropout", HashedDropout(cfg.dropout));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.layers; ++i) blocks_->push_back(DecoderBlock(cfg));
  ln_final_ = register_module("ln_final", torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.d_model})));
  // A tied head is computed from embed_->weight in forward(): assigning the tensor to a
  // Linear would not register it, and a state-dict round trip would untie them.
  if (!cfg.tied_head)
    head_ =
        register_module("head", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_model, cfg.vocab_size).bias(false)));

  init_weights();
}

void TransformerImpl::init_weights() {
  // In the order the modules were built (which fixes what each draws from the seed).
  torch::NoGradGuard no_grad;
  embed_->weight.normal_(0.0, init::kStd);
  pos_->init_weights();
  // zero_init: the projections into the residual stream start at 0, so each block starts as the
  // identity and learns what to add.
  const double residual_std = cfg_.zero_init ? 0.0 : init::residual_std(cfg_.layers);
  for (size_t i = 0; i < blocks_->size(); ++i) blocks_->ptr<DecoderBlockImpl>(i)->init_weights(residual_std);
  if (head_) head_->weight.normal_(0.0, init::kStd);
}

void TransformerImpl::set_dropout(double p) {
  for (auto& m : modules(/*include_self=*/false))
    if (auto* d = dynamic_cast<HashedDropoutImpl*>(m.get())) d->set_rate(p);
}

torch::Tensor one_sequence(const std::vector<int64_t>& ids, const torch::Device& device) {
  return torch::tensor(ids, torch::kLong).unsqueeze(0).to(device);
}

torch::Tensor TransformerImpl::head_weight() const { return cfg_.tied_head ? embed_->weight : head_->weight; }

torch::Tensor TransformerImpl::forward(const torch::Tensor& tokens, KVCache* cache,
                                       std::vector<AttentionTrace>* traces) {
  const int64_t T = tokens.size(1);
  const int64_t start = cache ? cache->length() : 0;
  TORCH_CHECK(start + T <= cfg_.context, "sequence of ", start + T, " tokens exceeds the context of ", cfg_.context);
  if (cache && cache->layers.size() != blocks_->size()) cache->layers.resize(blocks_->size());

  auto x = embed_(tokens) * std::sqrt(static_cast<double>(cfg_.d_model));  // token embedding
  if (adds_positions()) x = x + pos_(start, T);                            // + positional encoding
  x = dropout_(x);
  if (traces) traces->assign(blocks_->size(), AttentionTrace{});
  for (size_t i = 0; i < blocks_->size(); ++i)  // N × decoder block
    x = blocks_->ptr<DecoderBlockImpl>(i)->forward(x, cache ? &cache->layers[i] : nullptr,
                                                   traces ? &(*traces)[i] : nullptr, kernels_);
  x = ln_final_(x);
  auto logits = torch::matmul(x, head_weight().t());  // decoder head: [B, T, vocab]
  if (cfg_.logit_softcap > 0) logits = cfg_.logit_softcap * torch::tanh(logits / cfg_.logit_softcap);
  return logits;
}

}  // namespace dracarys
