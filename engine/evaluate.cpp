#include "engine/evaluate.h"

#include <cmath>

namespace dracarys {

EvalResult evaluate(Transformer& model, const std::vector<Batch>& batches, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  double nats = 0;
  EvalResult r;
  for (const auto& b : batches) {
    auto logits = model->forward(b.inputs.to(device));
    auto loss =
        torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), b.targets.to(device).reshape({-1}),
                                             torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    nats += loss.item<double>();
    r.tokens += b.targets.numel();
    r.chars += b.target_chars;
  }
  if (was_training) model->train();
  if (r.tokens == 0) return r;
  r.loss = nats / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.loss);
  r.bits_per_char = r.chars > 0 ? nats / std::log(2.0) / r.chars : 0.0;
  return r;
}

EvalResult evaluate_line(Transformer& model, std::vector<int64_t> ids, int64_t eos_id,
                         const std::vector<float>& chars_per_token, const torch::Device& device) {
  ids.insert(ids.begin(), eos_id);  // what came before: the end of the previous utterance
  ids.push_back(eos_id);            // what the line must end with
  const int64_t context = model->config().context;
  std::vector<Batch> windows;
  for (size_t start = 0; start + 1 < ids.size(); start += static_cast<size_t>(context)) {
    const size_t n = std::min(static_cast<size_t>(context), ids.size() - 1 - start);
    std::vector<int64_t> in(ids.begin() + static_cast<std::ptrdiff_t>(start),
                            ids.begin() + static_cast<std::ptrdiff_t>(start + n));
    std::vector<int64_t> target(ids.begin() + static_cast<std::ptrdiff_t>(start + 1),
                                ids.begin() + static_cast<std::ptrdiff_t>(start + 1 + n));
    Batch b;
    b.inputs = one_sequence(in);
    b.targets = one_sequence(target);
    for (auto id : target) b.target_chars += chars_per_token.at(static_cast<size_t>(id));
    windows.push_back(std::move(b));
  }
  return evaluate(model, windows, device);
}

}  // namespace dracarys
