#include "common/evaluate.h"

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

}  // namespace dracarys
