// One completion, the same for dracarys-infer and dracarys-serve: the prompt through the model,
// each new token handed on as soon as it ends a whole UTF-8 character (a byte-fallback token
// may end inside one), until the end of the utterance, the token limit, or the caller says stop
// (its client is gone, or the server is closing).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/loaded_model.h"
#include "engine/stop_text.h"
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

 private:
  const Tokenizer& tokenizer_;
  std::vector<TokenId> pending_;
  bool handed_on_ = false;  // pending_ went out as text with the last add()
};

// One generated token's log-probability under the model (its softmax, before temperature,
// penalties or truncation), with the most likely alternatives at that position.
struct TokenLogprob {
  TokenId id = 0;
  float logprob = 0;
  std::vector<std::pair<TokenId, float>> top;  // most likely first
};

struct CompletionPiece {
  std::string text;                    // whole characters only
  std::vector<TokenId> ids;            // the tokens that made them
  std::vector<TokenLogprob> logprobs;  // theirs, when asked for
};

struct CompletionResult {
  std::string text;                    // the whole completion (the pieces' texts joined)
  std::vector<TokenId> prompt_ids;     // what the model saw of the prompt (its last `context` tokens)
  std::vector<TokenId> ids;            // the tokens behind `text`: a final end-of-utterance token and the
                                       // tokens wholly inside a stop sequence left out
  std::vector<TokenLogprob> logprobs;  // one per token of `ids`, when asked for
  bool stopped_by_end = false;         // the model ended the utterance
  std::string stopped_by_word;         // the stop sequence that ended it, if one did
  bool cancelled = false;              // on_piece returned false
  GenerateStats stats;
  bool stopped() const { return stopped_by_end || !stopped_by_word.empty(); }  // else: the token limit
};

struct CompletionOptions {
  SamplingOptions sampling;
  int64_t max_new_tokens = 100;
  bool ignore_end = false;        // keep going past the end of the utterance (its token is a line break)
  std::vector<std::string> stop;  // stop sequences: the text ends where the first appears, without it
  int64_t top_logprobs = -1;      // -1: no log-probabilities; n >= 0: each token's, with n alternatives
  bool use_cache = true;          // false: the whole window again for every token (slow; for comparison)
};

using OnPiece = std::function<bool(const CompletionPiece&)>;

// A completion's bookkeeping, token by token, whoever runs the model (generate() for one
// request, the server's batch for many): the log-probabilities, the end of the utterance, stop
// sequences, whole characters, and the pieces handed on. A token goes out with the piece that
// shows the last of its text, so a token wholly inside a stop sequence never goes out (its
// log-probability and its count with it), and one that the stop cuts goes out with the cut text.
class CompletionTracker {
 public:
  CompletionTracker(const Tokenizer& tokenizer, const CompletionOptions& options, OnPiece on_piece);
  // The model's logits [vocab] for the next position, before the sampler picks from them.
  void see_logits(const std::vector<float>& logits);
  // The token picked; false when the completion is over (the end, a stop sequence, a caller
  // that said stop). The token limit is the caller's to count.
  bool take(TokenId id);
  // After the last token: what is still held back goes out.
  void finish();
  CompletionResult& result() { return r_; }

 private:
  // A token not yet gone out, with where its text lies in all the text generated (bytes).
  struct HeldToken {
    TokenId id;
    std::optional<TokenLogprob> logprob;
    size_t start = 0, end = 0;
  };
  void place_held(size_t text_bytes);  // the tokens just made into text span the next text_bytes
  bool show(const std::string& text);  // hands on `text` with the tokens it completes
  bool hand_on(const std::string& text, std::vector<TokenId> ids, std::vector<TokenLogprob> logprobs);
  TokenLogprob logprob_of(TokenId id) const;

  const Tokenizer& tokenizer_;
  CompletionOptions options_;
  OnPiece on_piece_;
  WholeCharacters characters_;
  StopText stop_text_;
  std::vector<HeldToken> held_;     // tokens not handed on yet, oldest first
  size_t placed_ = 0;               // how many of held_ have their place in the text
  size_t made_bytes_ = 0;           // text the tokens have made so far, stop sequences included
  size_t shown_bytes_ = 0;          // of it, what has gone out
  std::vector<float> seen_logits_;  // [vocab] the last position's, when log-probabilities are asked for
  CompletionResult r_;
};

// The prompt's tokens as the model reads them: an empty prompt starts a new utterance.
std::vector<TokenId> prompt_tokens(const Tokenizer& tokenizer, const std::string& prompt);

// Generates after the prompt's tokens, one request alone. on_piece may be null.
CompletionResult run_completion(LoadedModel& m, std::vector<TokenId> prompt, const CompletionOptions& options,
                                const OnPiece& on_piece);
inline CompletionResult run_completion(LoadedModel& m, const std::string& prompt, const CompletionOptions& options,
                                       const OnPiece& on_piece) {
  return run_completion(m, prompt_tokens(m.tokenizer, prompt), options, on_piece);
}

}  // namespace dracarys
