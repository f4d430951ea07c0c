// From lines of text to (input, target) batches of token windows.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace dracarys {

// Utterances encoded back to back, each followed by the end-of-utterance token. An empty line
// (a scene break, see training_lines) is a lone end-of-utterance token.
struct TokenStream {
  std::vector<TokenId> ids;
  double chars = 0;  // characters the ids stand for (line ends included)
};
TokenStream tokenize_lines(const Tokenizer& tok, const std::vector<std::string>& lines);

struct Batch {
  torch::Tensor inputs, targets;  // [batch, context] int64; targets are inputs shifted by one
  double target_chars = 0;        // characters the targets stand for (for bits per character)
};

// Random windows of context + 1 tokens. The windows of step s depend only on (seed, s): a
// resumed run sees exactly the batches an uninterrupted run would. In a distributed run the
// step's global batch has batch_size x world windows and rank r takes its r-th slice, so the
// ranks never share a window within a step and together see what one process with the
// global batch would.
class TrainBatcher {
 public:
  TrainBatcher(std::vector<TokenId> stream, int64_t context, int64_t batch_size, uint64_t seed);
  Batch batch(int64_t step, int64_t rank = 0) const;
  size_t tokens() const { return stream_.size(); }

 private:
  std::vector<TokenId> stream_;
  int64_t context_, batch_size_;
  uint64_t seed_;
};

// Fixed evaluation batches: consecutive non-overlapping windows from the start of the stream,
// every target token predicted once; at most max_windows windows (0 = all).
std::vector<Batch> eval_batches(const TokenStream& stream, const std::vector<float>& chars_per_token, int64_t context,
                                int64_t batch_size, int64_t max_windows = 0);

}  // namespace dracarys
