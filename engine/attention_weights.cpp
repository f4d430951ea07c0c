#include "engine/attention_weights.h"

#include <stdexcept>

#include "model/generate.h"

namespace dracarys {

std::string display_piece(std::string piece) {
  const std::string mark = "\xE2\x96\x81";
  for (size_t at; (at = piece.find(mark)) != std::string::npos;) piece.replace(at, mark.size(), "\xC2\xB7");
  return piece;
}

AttentionMaps compute_attention(Transformer& model, const Tokenizer& tok, std::vector<TokenId> ids) {
  if (ids.empty()) throw std::invalid_argument("the prompt has no tokens to draw attention for");
  for (auto id : ids)
    if (id < 0 || id >= model->config().vocab_size)
      throw std::invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string(model->config().vocab_size));
  ids = last_context(std::move(ids), model->config().context);
  torch::NoGradGuard no_grad;
  if (model->is_training()) model->eval();  // (a loaded model already is: then nothing changes it)
  const auto device = model->head_weight().device();
  auto input = one_sequence(ids, device);
  // Asking for the weights runs the reference attention, box by box as the diagram draws it.
  std::vector<torch::Tensor> attention;
  model->forward(input, nullptr, &attention);
  AttentionMaps maps;
  maps.ids = ids;
  // The end of a line shows as ⏎, not as the tokenizer's "</s>".
  for (auto id : ids) maps.tokens.push_back(id == tok.eos_id() ? "\xE2\x8F\x8E" : display_piece(tok.piece(id)));
  maps.text = tok.decode(ids);
  for (auto& a : attention) maps.layers.push_back(a.select(0, 0).to(torch::kCPU, torch::kFloat).contiguous());
  return maps;
}

AttentionMaps compute_attention(Transformer& model, const Tokenizer& tok, const std::string& prompt) {
  return compute_attention(model, tok, tok.encode(prompt));
}

}  // namespace dracarys
