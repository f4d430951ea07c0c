#include "engine/completion.h"

#include "data/text.h"

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

CompletionResult run_completion(LoadedModel& m, const std::string& prompt, const CompletionOptions& request,
                                const std::function<bool(const CompletionPiece&)>& on_piece) {
  const bool ignore_end = request.ignore_end;
  CompletionResult r;
  auto ids = m.tokenizer.encode(prompt);
  if (ids.empty()) ids.push_back(m.tokenizer.eos_id());  // an empty prompt starts a new utterance
  r.prompt_ids = last_context(ids, m.model->config().context);

  GenerateOptions g;
  g.sampling = request.sampling;
  g.max_new_tokens = request.max_new_tokens;
  g.use_cache = request.use_cache;
  if (!ignore_end) g.stop_token = m.tokenizer.eos_id();

  WholeCharacters characters(m.tokenizer);
  auto hand_on = [&](const std::optional<std::string>& text) {
    if (!text) return true;  // a character still cut
    r.text += *text;
    return !on_piece || on_piece(CompletionPiece{*text, characters.tokens()});
  };
  auto on_token = [&](int64_t id) {
    if (id == m.tokenizer.eos_id() && !ignore_end) {
      r.stopped_by_end = true;
      return true;  // generate() stops after the stop token
    }
    r.ids.push_back(id);
    if (!hand_on(characters.add(id))) r.cancelled = true;
    return !r.cancelled;
  };
  if (request.max_new_tokens > 0) generate(m.model, ids, g, on_token, &r.stats);
  if (!r.cancelled && !hand_on(characters.rest())) r.cancelled = true;
  return r;
}

}  // namespace dracarys
