#include "engine/attention_boxes.h"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

#include "engine/attention_weights.h"
#include "model/generate.h"

namespace dracarys {

namespace {

// One sequence's box: the batch dimension removed, on the CPU as float (undefined stays so).
torch::Tensor first_sequence(const torch::Tensor& x) {
  return x.defined() ? x.select(0, 0).to(torch::kCPU, torch::kFloat).contiguous() : x;
}

AttentionTrace first_sequence(AttentionTrace t) {
  for (auto* box : {&t.residual, &t.input, &t.q, &t.k, &t.v, &t.q_normed, &t.k_normed, &t.q_rotated, &t.k_rotated,
                    &t.scores, &t.scaled, &t.masked, &t.filter, &t.filtered, &t.concat, &t.output})
    *box = first_sequence(*box);
  return t;
}

}  // namespace

TracedSequence trace_sequence(Transformer& model, const Tokenizer& tok, std::vector<TokenId> ids) {
  if (ids.empty()) throw std::invalid_argument("the prompt has no tokens to draw attention for");
  for (auto id : ids)
    if (id < 0 || id >= model->config().vocab_size)
      throw std::invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string(model->config().vocab_size));
  ids = last_context(std::move(ids), model->config().context);
  torch::NoGradGuard no_grad;
  if (model->is_training()) model->eval();  // (a loaded model already is: then nothing changes it)
  // Asking for the traces runs the reference attention, box by box as the diagram draws it.
  std::vector<AttentionTrace> traces;
  model->forward(one_sequence(ids, model->head_weight().device()), nullptr, &traces);
  TracedSequence s;
  s.ids = ids;
  // The end of a line shows as ⏎, not as the tokenizer's "</s>".
  for (auto id : ids) s.tokens.push_back(id == tok.eos_id() ? "\xE2\x8F\x8E" : display_piece(tok.piece(id)));
  for (const auto& t : traces) s.layers.push_back(first_sequence(t));
  return s;
}

std::vector<AttentionBox> head_boxes(const TracedSequence& s, int64_t layer, int64_t head) {
  if (layer < 0 || layer >= static_cast<int64_t>(s.layers.size()))
    throw std::invalid_argument(fmt::format("layer {} is out of range: the model has {}", layer, s.layers.size()));
  const auto& t = s.layers[layer];
  const int64_t heads = t.q.size(0), dk = t.q.size(2);
  if (head < 0 || head >= heads)
    throw std::invalid_argument(fmt::format("head {} is out of range: each layer has {}", head, heads));
  const auto h = [&](const torch::Tensor& x) { return x.select(0, head); };  // [H, T, *] -> [T, *]
  const std::string of_head = fmt::format(" (head {}'s {} of the {} features)", head, dk, dk * heads);
  std::vector<AttentionBox> b;
  b.push_back({"residual", layer == 0 ? "position-aware embeddings" : "the residual stream",
               layer == 0
                   ? "Each token's embedding, with its position added (unless the model rotates Q and K instead)."
                   : "Each token's vector as the layers below left it: the embedding plus what they added.",
               "token", "feature", t.residual});
  b.push_back({"input", "layer norm", "Each vector normalised; three copies go into the Q, K and V linear layers.",
               "token", "feature", t.input});
  b.push_back({"q", "Q (queries)", "What each token looks for" + of_head + ".", "token", "feature", h(t.q)});
  b.push_back({"k", "K (keys)", "What each token offers to the queries" + of_head + ".", "token", "feature", h(t.k)});
  b.push_back({"v", "V (values)", "What each token passes on when it is attended to" + of_head + ".", "token",
               "feature", h(t.v)});
  if (t.q_normed.defined()) {
    b.push_back({"q_normed", "Q, normalised", "QK-norm: each query scaled to unit root mean square.", "token",
                 "feature", h(t.q_normed)});
    b.push_back({"k_normed", "K, normalised", "QK-norm: each key scaled to unit root mean square.", "token", "feature",
                 h(t.k_normed)});
  }
  if (t.q_rotated.defined()) {
    b.push_back({"q_rotated", "Q, rotated",
                 "Rotary positions: each pair of features turned by an angle that grows "
                 "with the token's position.",
                 "token", "feature", h(t.q_rotated)});
    b.push_back({"k_rotated", "K, rotated",
                 "The keys turned the same way, so a score depends on how far apart two "
                 "tokens are.",
                 "token", "feature", h(t.k_rotated)});
  }
  b.push_back({"scores", "Q·Kᵀ (scores)", "How well each query (row) matches each key (column).", "query token",
               "key token", h(t.scores)});
  b.push_back({"scaled", fmt::format("scaled by 1/√{}", dk),
               fmt::format("The scores divided by √d_k = {:.3g}, so the softmax does not saturate.", std::sqrt(dk)),
               "query token", "key token", h(t.scaled)});
  b.push_back({"masked", "causal mask", "−∞ above the diagonal: no token may look at one after it.", "query token",
               "key token", h(t.masked)});
  b.push_back({"filter", "softmax: the attention filter",
               "Each row turned into weights that sum to 1: how much each token draws from each earlier one.",
               "query token", "key token", h(t.filter)});
  b.push_back({"filtered", "filter · V", "Each token's mix of the values it attends to, weighted by its filter row.",
               "token", "feature", h(t.filtered)});
  b.push_back({"concat", "heads concatenated",
               fmt::format("Every head's filtered values side by side; head {}'s are features {} to {}.", head,
                           head * dk, head * dk + dk - 1),
               "token", "feature", t.concat});
  b.push_back({"output", "output projection",
               "The final linear layer mixes the heads back into d_model features, added to the residual stream.",
               "token", "feature", t.output});
  return b;
}

}  // namespace dracarys
