// The visual guide's walk through one attention layer, on the model's real numbers: one
// sequence through the reference attention (model/attention_trace.h), then the boxes of one
// head in the guide's order, each a matrix with a name, its shape and a sentence saying what it
// does. dracarys-serve's POST /trace returns them; dracarys-infer --explain draws them.
//
//   position-aware input ─► layer norm ─► Q, K, V ─► [QK-norm] ─► [rotation]
//     ─► Q·Kᵀ ─► ÷ √d_k ─► causal mask ─► softmax (the filter) ─► filter · V
//     ─► heads concatenated ─► output projection
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/transformer.h"

namespace dracarys {

struct TracedSequence {
  std::vector<TokenId> ids;            // the tokens, [T]
  std::vector<std::string> tokens;     // display text of each token (display_piece)
  std::vector<AttentionTrace> layers;  // per layer, one sequence: the batch dimension removed, on the CPU as float
};

// Runs the tokens through the model once (eval mode, the reference attention) and keeps every
// layer's boxes. More tokens than the context keep their last ones. Throws
// std::invalid_argument for no tokens or an id outside the vocabulary.
TracedSequence trace_sequence(Transformer& model, const Tokenizer& tok, std::vector<TokenId> ids);

struct AttentionBox {
  std::string name;        // stable key: "residual", "input", "q", ..., "filter", "output"
  std::string title;       // as the guide labels it, e.g. "Q·Kᵀ (scores)"
  std::string says;        // one sentence: what this box does
  std::string rows, cols;  // what a row and a column are: "query token", "key token", "feature", ...
  torch::Tensor values;    // [rows, cols] float on the CPU; the mask's -inf stays -inf
};

// One head's boxes at one layer, in the guide's order; the boxes every head shares (the input,
// the concatenation, the output) are included whole. Throws std::invalid_argument when the
// layer or head is out of range.
std::vector<AttentionBox> head_boxes(const TracedSequence& s, int64_t layer, int64_t head);

}  // namespace dracarys
