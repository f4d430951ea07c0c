#include "serve/completion.h"

#include "data/text.h"

namespace dracarys {

CompletionResult run_completion(LoadedModel& m, const std::string& prompt, const SamplingOptions& sampling,
                                int64_t max_new_tokens, bool ignore_end,
                                const std::function<bool(const CompletionPiece&)>& on_piece) {
  CompletionResult r;
  auto ids = m.tokenizer.encode(prompt);
  if (ids.empty()) ids.push_back(m.tokenizer.eos_id());
  r.prompt_ids = last_context(ids, m.model->config().context);

  GenerateOptions g;
  g.sampling = sampling;
  g.max_new_tokens = max_new_tokens;
  if (!ignore_end) g.stop_token = m.tokenizer.eos_id();
  g.fast_decode = m.model->kernels() == Kernels::kFast;

  // Tokens wait in `pending` until they decode to whole characters.
  CompletionPiece pending;
  auto hand_on = [&](bool final) {
    const std::string decoded = m.tokenizer.decode(pending.ids);
    if (!final && complete_utf8_prefix(decoded) < decoded.size()) return true;
    pending.text = decoded;
    r.text += decoded;
    const bool go_on = !on_piece || on_piece(pending);
    pending = {};
    return go_on;
  };
  auto on_token = [&](int64_t id) {
    if (id == m.tokenizer.eos_id() && !ignore_end) {
      r.stopped_by_end = true;
      return true;  // generate() stops after the stop token
    }
    r.ids.push_back(id);
    pending.ids.push_back(id);
    if (!hand_on(false)) r.cancelled = true;
    return !r.cancelled;
  };
  if (max_new_tokens > 0) generate(m.model, ids, g, on_token, &r.stats);
  if (!pending.ids.empty() && !r.cancelled && !hand_on(true)) r.cancelled = true;
  return r;
}

}  // namespace dracarys
