#include "model/conversation.h"

#include <algorithm>
#include <stdexcept>

namespace dracarys {

Conversation::Conversation(Transformer model, int64_t end_token)
    : model_(std::move(model)), end_token_(end_token), cache_(model_->make_cache()) {
  model_->eval();
}

void Conversation::add(const std::vector<int64_t>& ids) {
  const int64_t context = model_->config().context;
  // A piece longer than the context: only its last tokens can be seen.
  const auto start = ids.size() > static_cast<size_t>(context) ? ids.end() - context : ids.begin();
  const std::vector<int64_t> piece(start, ids.end());
  if (piece.empty()) return;
  make_room(static_cast<int64_t>(piece.size()));
  feed(piece);
  unheard_.insert(unheard_.end(), piece.begin(), piece.end());
}

void Conversation::feed(const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  if (ids.size() == 1) {  // a token just sampled: generation's fast step
    last_logits_ = model_->decode_one(ids[0], cache_).to(torch::kCPU, torch::kFloat).contiguous();
  } else {
    const auto device = model_->head_weight().device();
    auto tokens = one_sequence(ids, device);         // [1, T]
    auto logits = model_->forward(tokens, &cache_);  // [1, T, vocab]
    last_logits_ = logits[0][-1].to(torch::kCPU, torch::kFloat).contiguous();
  }
  history_.insert(history_.end(), ids.begin(), ids.end());
}

void Conversation::make_room(int64_t incoming) {
  const int64_t context = model_->config().context;
  if (static_cast<int64_t>(history_.size()) + incoming <= context) return;
  // Keep the newest whole utterances that, with the incoming tokens, fill at most half the
  // context: the next rebuild is then half a context away.
  const int64_t budget = std::max<int64_t>(0, context / 2 - incoming);
  size_t cut = history_.size();  // history_[cut..] is kept
  for (size_t i = history_.size(); i-- > 0;) {
    if (history_[i] != end_token_ || i + 1 == history_.size()) continue;
    if (static_cast<int64_t>(history_.size() - (i + 1)) > budget) break;
    cut = i + 1;  // the utterances after this end token still fit
  }
  // No whole utterance fits (one line is longer than that): keep its last tokens.
  if (cut == history_.size() && budget > 0) cut = history_.size() - std::min<size_t>(history_.size(), budget);
  std::vector<int64_t> kept(history_.begin() + static_cast<std::ptrdiff_t>(cut), history_.end());
  history_.clear();
  cache_ = model_->make_cache();
  ++rebuilds_;
  if (!kept.empty()) feed(kept);
}

std::vector<int64_t> Conversation::continue_utterance(Sampler& sampler, int64_t max_tokens,
                                                      const std::function<void(int64_t)>& on_token) {
  if (history_.empty()) throw std::logic_error("Conversation: nothing to continue");
  sampler.remember(unheard_);  // the lines added since, for the sampler's penalties
  unheard_.clear();
  std::vector<int64_t> out;
  for (int64_t i = 0; i < max_tokens; ++i) {
    const float* p = last_logits_.data_ptr<float>();
    const int64_t id = sampler.next(std::vector<float>(p, p + last_logits_.numel()));
    if (on_token) on_token(id);
    add({id});
    unheard_.clear();  // the sampler remembers what it picked
    if (id == end_token_) return out;
    out.push_back(id);
  }
  add({end_token_});  // a line cut at max_tokens still ends, so the next one starts cleanly
  return out;
}

}  // namespace dracarys
