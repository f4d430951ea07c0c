// A conversation the model carries on over many utterances: every token it has seen, in one KV
// cache that is kept across turns, so each new line costs only its own tokens.
//
// An utterance is a run of tokens closed by the end token. When the conversation outgrows the
// context, the oldest utterances are dropped whole (so the model never sees half a line at the
// start of its window) until what is left fills at most half the context, and the cache is
// rebuilt from what is left in one forward pass. Only an utterance longer than that is cut
// inside, keeping its last tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/sampler.h"
#include "model/transformer.h"

namespace dracarys {

class Conversation {
 public:
  // Each sampled token goes through the model's one-token step (decode_one), which follows the
  // model's kernels setting.
  Conversation(Transformer model, int64_t end_token);

  // Feeds tokens to the model: a typed line, its speaker prefix, or a token just sampled.
  void add(const std::vector<int64_t>& ids);

  // Samples tokens after what was added until the end token (which is added too) or until
  // `max_tokens`. on_token sees each id as it is chosen, the end token included. Returns the
  // ids, without the end token. Needs something added first.
  std::vector<int64_t> continue_utterance(Sampler& sampler, int64_t max_tokens,
                                          const std::function<void(int64_t)>& on_token = nullptr);

  int64_t rebuilds() const { return rebuilds_; }  // times old utterances were dropped

 private:
  void make_room(int64_t incoming);  // drops old utterances so `incoming` more tokens fit
  void feed(const std::vector<int64_t>& ids);

  Transformer model_;
  int64_t end_token_;
  KVCache cache_;
  std::vector<int64_t> history_;  // [cache_.length()] the tokens in the cache, oldest first
  torch::Tensor last_logits_;     // [vocab] prediction after the last token fed
  std::vector<int64_t> unheard_;  // tokens added since a sampler last saw the conversation
  int64_t rebuilds_ = 0;
};

}  // namespace dracarys
