// One completion, the same for dracarys-infer and dracarys-serve: the prompt through the model,
// each new token handed on as soon as it ends a whole UTF-8 character (a byte-fallback token
// may end inside one), until the end of the utterance, the token limit, or the caller says stop
// (its client is gone, or the server is closing).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/loaded_model.h"
#include "model/generate.h"

namespace dracarys {

// Tokens to text, whole UTF-8 characters at a time: a token that ends inside a character waits
// for the token that finishes it.
class WholeCharacters {
 public:
  explicit WholeCharacters(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // The text `id` completes, with the tokens waiting before it; nothing while a character is cut.
  std::optional<std::string> add(TokenId id);
  // What is still waiting, cut character and all; nothing when no token waits.
  std::optional<std::string> rest();
  // The tokens behind the text last returned (or still waiting).
  const std::vector<TokenId>& tokens() const { return pending_; }

 private:
  const Tokenizer& tokenizer_;
  std::vector<TokenId> pending_;
  bool handed_on_ = false;  // pending_ went out as text with the last add()
};

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

struct CompletionOptions {
  SamplingOptions sampling;
  int64_t max_new_tokens = 100;
  bool ignore_end = false;  // keep going past the end of the utterance (its token is a line break)
  bool use_cache = true;    // false: the whole window again for every token (slow; for comparison)
};

// Generates after `prompt` (an empty prompt starts a new utterance). on_piece may be null.
CompletionResult run_completion(LoadedModel& m, const std::string& prompt, const CompletionOptions& request,
                                const std::function<bool(const CompletionPiece&)>& on_piece);

}  // namespace dracarys
