#include "train/step.h"

#include <cmath>
#include <limits>

namespace dracarys {

torch::optim::AdamW make_optimizer(Transformer& model, const TrainOptions& o) {
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : model->parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  auto opts = torch::optim::AdamWOptions(o.lr).betas({0.9, 0.99}).eps(1e-8);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts.weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(opts.weight_decay(0.0)));
  return torch::optim::AdamW(std::move(groups), opts);
}

void set_learning_rate(torch::optim::AdamW& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

void check_optimizer_state(torch::optim::AdamW& opt) {
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) {
      auto it = opt.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == opt.state().end()) continue;  // a parameter that has not been updated yet
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      const bool ok = st.step() >= 0 && st.exp_avg().defined() && st.exp_avg_sq().defined() &&
                      st.exp_avg().sizes() == p.sizes() && st.exp_avg_sq().sizes() == p.sizes() &&
                      st.exp_avg().scalar_type() == p.scalar_type() && st.exp_avg_sq().scalar_type() == p.scalar_type();
      if (!ok) throw std::invalid_argument("the checkpoint's optimizer state does not fit its model's parameters");
    }
}

double train_step(Transformer& model, torch::optim::AdamW& opt, const torch::Tensor& inputs,
                  const torch::Tensor& targets, double grad_clip, int64_t micro_batches, Distributed* dist,
                  StepSignals* signals) {
  // Drop the old gradients instead of zero-filling them: backward then writes fresh tensors
  // rather than adding into zeros (LibTorch 1.13's zero_grad() has no set_to_none).
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) p.mutable_grad().reset();
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
