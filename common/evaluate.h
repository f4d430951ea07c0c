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

}  // namespace dracarys
