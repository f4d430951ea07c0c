#include "engine/completion.h"

#include "data/text.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dracarys {

std::optional<std::string> WholeCharacters::add(TokenId id) {
  if (handed_on_) pending_.clear(), handed_on_ = false;
  // Decoding is a concatenation of pieces, so only the tokens not yet handed on need decoding.
  pending_.push_back(id);
  std::string text = tokenizer_.decode(pending_);
  if (complete_utf8_prefix(text) < text.size()) return std::nullopt;  // wait for the character's other bytes
  handed_on_ = true;
  return text;
}

std::optional<std::string> WholeCharacters::rest() {
  if (handed_on_) pending_.clear(), handed_on_ = false;
  if (pending_.empty()) return std::nullopt;
  handed_on_ = true;
  return tokenizer_.decode(pending_);
}

std::vector<TokenId> prompt_tokens(const Tokenizer& tokenizer, const std::string& prompt) {
  auto ids = tokenizer.encode(prompt);
  if (ids.empty()) ids.push_back(tokenizer.eos_id());  // an empty prompt starts a new utterance
  return ids;
}

CompletionTracker::CompletionTracker(const Tokenizer& tokenizer, const CompletionOptions& options, OnPiece on_piece)
    : tokenizer_(tokenizer),
      options_(options),
      on_piece_(std::move(on_piece)),
      characters_(tokenizer),
      stop_text_(options.stop) {}

void CompletionTracker::see_logits(const std::vector<float>& logits) {
  if (options_.top_logprobs >= 0) seen_logits_ = logits;
}

// The picked token's log-probability under the logits seen last (log softmax, in double), and
// the n most likely tokens' (ties: the lower id first).
TokenLogprob CompletionTracker::logprob_of(TokenId id) const {
  const auto& l = seen_logits_;
  const float top = *std::max_element(l.begin(), l.end());
  double sum = 0.0;
  for (float x : l) sum += std::exp(static_cast<double>(x) - top);
  const double log_sum = top + std::log(sum);
  TokenLogprob lp{id, static_cast<float>(l[id] - log_sum), {}};
  const auto n = static_cast<size_t>(std::min<int64_t>(options_.top_logprobs, static_cast<int64_t>(l.size())));
  std::vector<TokenId> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(),
                    [&](TokenId a, TokenId b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  for (size_t i = 0; i < n; ++i) lp.top.emplace_back(order[i], static_cast<float>(l[order[i]] - log_sum));
  return lp;
}

bool CompletionTracker::take(TokenId id) {
  if (id == tokenizer_.eos_id() && !options_.ignore_end) {
    r_.stopped_by_end = true;
    return false;
  }
  held_.push_back({id, std::nullopt, 0, 0});
  if (!seen_logits_.empty()) {
    held_.back().logprob = logprob_of(id);
    seen_logits_.clear();
  }
  if (auto text = characters_.add(id)) {
    place_held(text->size());
    if (!show(stop_text_.add(*text))) r_.cancelled = true;
  }
  return !r_.cancelled && !stop_text_.stopped();
}

void CompletionTracker::finish() {
  if (r_.cancelled || stop_text_.stopped()) return;
  std::string text;
  if (auto rest = characters_.rest()) {
    place_held(rest->size());
    text = stop_text_.add(*rest);
  }
  if (!show(text + stop_text_.rest())) r_.cancelled = true;
}

void CompletionTracker::place_held(size_t text_bytes) {
  for (; placed_ < held_.size(); ++placed_)
    held_[placed_].start = made_bytes_, held_[placed_].end = made_bytes_ + text_bytes;
  made_bytes_ += text_bytes;
}

bool CompletionTracker::show(const std::string& text) {
  shown_bytes_ += text.size();
  if (stop_text_.stopped()) r_.stopped_by_word = stop_text_.word();
  // Out go the tokens whose text is all shown; after a stop, also one the stop cuts, and the
  // rest (inside the stop sequence) are dropped.
  size_t n = 0;
  while (n < placed_ && (held_[n].end <= shown_bytes_ || (stop_text_.stopped() && held_[n].start < shown_bytes_))) ++n;
  std::vector<TokenId> ids;
  std::vector<TokenLogprob> logprobs;
  for (size_t i = 0; i < n; ++i) {
    ids.push_back(held_[i].id);
    if (held_[i].logprob) logprobs.push_back(std::move(*held_[i].logprob));
  }
  held_.erase(held_.begin(), stop_text_.stopped() ? held_.end() : held_.begin() + static_cast<std::ptrdiff_t>(n));
  placed_ = stop_text_.stopped() ? 0 : placed_ - n;
  return hand_on(text, std::move(ids), std::move(logprobs));
}

bool CompletionTracker::hand_on(const std::string& text, std::vector<TokenId> ids, std::vector<TokenLogprob> logprobs) {
  if (text.empty() && ids.empty()) return true;
  r_.text += text;
  r_.ids.insert(r_.ids.end(), ids.begin(), ids.end());
  r_.logprobs.insert(r_.logprobs.end(), logprobs.begin(), logprobs.end());
  CompletionPiece piece{text, std::move(ids), std::move(logprobs)};
  return !on_piece_ || on_piece_(piece);
}

CompletionResult run_completion(LoadedModel& m, std::vector<TokenId> prompt, const CompletionOptions& options,
                                const OnPiece& on_piece) {
  CompletionTracker tracker(m.tokenizer, options, on_piece);
  tracker.result().prompt_ids = last_context(prompt, m.model->config().context);
  GenerateOptions g;
  g.sampling = options.sampling;
  g.max_new_tokens = options.max_new_tokens;
  g.use_cache = options.use_cache;
  if (options.top_logprobs >= 0) g.on_logits = [&](const std::vector<float>& logits) { tracker.see_logits(logits); };
  auto& r = tracker.result();
  if (options.max_new_tokens > 0)
    generate(
        m.model, prompt, g, [&](int64_t id) { return tracker.take(id); }, &r.stats);
  tracker.finish();
  return std::move(r);
}

}  // namespace dracarys
