// What each head of each layer attends to for one sequence of tokens, as the model computed
// it (eval mode, no dropout): the weights dracarys-infer's --attention-map draws and
// dracarys-serve's /attention returns.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/transformer.h"

namespace dracarys {

struct AttentionMaps {
  std::vector<TokenId> ids;           // the tokens, [T]
  std::vector<std::string> tokens;    // display text of each token (see display_piece)
  std::string text;                   // the tokens decoded: the prompt as the model read it
  std::vector<torch::Tensor> layers;  // per layer: [heads, T, T] float on the CPU; row t = query t
};

// Runs the tokens through the model once (the reference attention, box by box) and keeps every
// layer's attention weights. More tokens than the context keep their last ones. Throws
// std::invalid_argument for no tokens or an id outside the vocabulary.
AttentionMaps compute_attention(Transformer& model, const Tokenizer& tok, std::vector<TokenId> ids);
// The same for a text, tokenised as the model reads it.
AttentionMaps compute_attention(Transformer& model, const Tokenizer& tok, const std::string& prompt);

// The piece as a person reads it: sentencepiece's word-start mark "▁" becomes a visible "·".
std::string display_piece(std::string piece);

}  // namespace dracarys
