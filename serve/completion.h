// One completion for the server: the prompt through the model, each new token handed on as
// soon as it ends a whole UTF-8 character, until the end of the utterance, the token limit,
// or the caller says stop (its client is gone, or the server is closing).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/loaded_model.h"
#include "model/generate.h"

namespace dracarys {

struct CompletionPiece {
  std::string text;          // whole characters only
  std::vector<TokenId> ids;  // the tokens that made them
};

struct CompletionResult {
  std::string text;                 // the whole completion (the pieces' texts joined)
  std::vector<TokenId> prompt_ids;  // what the model saw of the prompt (its last `context` tokens)
  std::vector<TokenId> ids;         // the generated tokens (a final end-of-utterance token left out)
  bool stopped_by_end = false;      // the model ended the utterance (else: the token limit, or stopped)
  bool cancelled = false;           // on_piece returned false
  GenerateStats stats;
};

// Generates after `prompt` (an empty prompt starts a new utterance) up to `max_new_tokens`,
// ending early at the end of the utterance unless `ignore_end` (then the end-of-utterance
// tokens are kept, as line breaks). on_piece may be null.
CompletionResult run_completion(LoadedModel& m, const std::string& prompt, const SamplingOptions& sampling,
                                int64_t max_new_tokens, bool ignore_end,
                                const std::function<bool(const CompletionPiece&)>& on_piece);

}  // namespace dracarys
