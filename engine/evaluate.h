// Loss, perplexity and bits per character of a model on fixed batches: the one measure used by
// training's validation and by `dracarys-infer --score`, so the two agree on the same text.
#pragma once

#include <vector>

#include "data/batching.h"
#include "model/transformer.h"

namespace dracarys {

struct EvalResult {
  double loss = 0;           // mean cross-entropy per token, in nats
  double perplexity = 0;     // exp(loss)
  double bits_per_char = 0;  // total bits / characters: comparable across tokenizers
  int64_t tokens = 0;
  double chars = 0;
};

EvalResult evaluate(Transformer& model, const std::vector<Batch>& batches, const torch::Device& device);

// One line's score, as llama-perplexity users read them: the line is seen after an end of
// utterance (as if it opened a scene) and its own end is predicted too. `chars_per_token` is
// the tokenizer's (Tokenizer::chars_per_token). A line longer than the context is scored in
// windows of the context, each starting afresh.
EvalResult evaluate_line(Transformer& model, std::vector<int64_t> ids, int64_t eos_id,
                         const std::vector<float>& chars_per_token, const torch::Device& device);

}  // namespace dracarys
