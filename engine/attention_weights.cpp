#include "engine/attention_weights.h"

#include <stdexcept>

#include "engine/attention_boxes.h"

namespace dracarys {

std::string display_piece(std::string piece) {
  const std::string mark = "\xE2\x96\x81";
  for (size_t at; (at = piece.find(mark)) != std::string::npos;) piece.replace(at, mark.size(), "\xC2\xB7");
  return piece;
}

AttentionMaps compute_attention(Transformer& model, const Tokenizer& tok, std::vector<TokenId> ids) {
  auto traced = trace_sequence(model, tok, std::move(ids));
  AttentionMaps maps;
  maps.ids = traced.ids;
  maps.tokens = traced.tokens;
  maps.text = tok.decode(traced.ids);
  for (const auto& t : traced.layers) maps.layers.push_back(t.filter);
  return maps;
}

AttentionMaps compute_attention(Transformer& model, const Tokenizer& tok, const std::string& prompt) {
  return compute_attention(model, tok, tok.encode(prompt));
}

}  // namespace dracarys
