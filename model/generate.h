// Autoregressive generation shared by the trainer's sample completions and dracarys-infer.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <optional>
#include <vector>

#include "model/sampler.h"
#include "model/transformer.h"

namespace dracarys {

struct GenerateOptions {
  SamplingOptions sampling;
  int64_t max_new_tokens = 100;
  std::optional<int64_t> stop_token;  // generation ends after emitting this id (end of utterance)
  // Sees each step's logits [vocab] just before the sampler picks from them (log-probabilities).
  std::function<void(const std::vector<float>& logits)> on_logits;
  // Then may change them: a token whose logit it sets to -inf is never picked (a choice among
  // some tokens only).
  std::function<void(std::vector<float>& logits)> mask_logits;
  bool use_cache = true;  // false recomputes the whole window per token (for comparison);
                          // with the cache, each new token takes the model's one-token step
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prompt_seconds = 0.0;    // prefill (first forward over the prompt)
  double generate_seconds = 0.0;  // everything after it
  bool prompt_truncated = false;  // the prompt was longer than the context and lost its head
};

// The last `context` tokens of `ids` (all of them when they fit): what the model can see.
std::vector<int64_t> last_context(std::vector<int64_t> ids, int64_t context);

// Generates up to max_new_tokens after `prompt` (which must not be empty). on_token is called
// with each new id as soon as it is chosen; returning false stops generation.
// The model is switched to eval mode and run without autograd. Past the context the window
// slides: the cache keeps the most recent half of the context and generation continues.
std::vector<int64_t> generate(Transformer& model, std::vector<int64_t> prompt, const GenerateOptions& opts,
                              const std::function<bool(int64_t)>& on_token = nullptr, GenerateStats* stats = nullptr);

}  // namespace dracarys
