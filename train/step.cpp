#include "train/step.h"

#include "train/options.h"

#include <cmath>
#include <limits>

namespace dracarys {

Transformer fresh_model(const TrainOptions& o, const torch::Device& device) {
  torch::manual_seed(o.seed);
  Transformer model(o.model);
  model->set_kernels(kernels_from_string(o.runtime.kernels));
  model->to(device);
  return model;
}

double train_step(Transformer& model, Optimizer& opt, const torch::Tensor& inputs, const torch::Tensor& targets,
                  double grad_clip, int64_t micro_batches, Distributed* dist, StepSignals* signals) {
  // Drop the old gradients instead of zero-filling them: backward then writes fresh tensors
  // rather than adding into zeros (LibTorch 1.13's zero_grad() has no set_to_none).
  opt.drop_gradients();
  const bool distributed = dist && dist->enabled();
  StepSignals none;
  StepSignals& sig = signals ? *signals : none;
  const auto x = inputs.chunk(micro_batches), y = targets.chunk(micro_batches);
  double value = 0;
  bool bad = false;
  for (int64_t m = 0; m < micro_batches; ++m) {
    // Forward and loss; with accumulation each micro-batch's loss is a share of the step's mean.
    auto logits = model->forward(x[m]);
    auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), y[m].reshape({-1}));
    if (micro_batches > 1) loss = loss / static_cast<double>(micro_batches);
    value += loss.item<double>();
    bad = bad || !std::isfinite(value);
    sig.set_local(bad);
    if (bad && !distributed) return value;
    // The last backward pass starts the all-reduce (every rank takes part, even with a bad loss).
    if (distributed && m + 1 == micro_batches) dist->begin_gradient_sync(bad, sig);
    loss.backward();
  }
  if (distributed) {
    dist->finish_gradient_sync(sig);
    if (sig.any_bad) return std::numeric_limits<double>::quiet_NaN();
  }
  if (grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), grad_clip);
  opt.step();
  return value;
}

}  // namespace dracarys
