// GPT-2 style initial weights, applied module by module (never by matching parameter names):
// small normal weights (std 0.02), zero biases, layer norms at weight 1 and bias 0 (LibTorch's
// own defaults), and the two projections that write into the residual stream (attention's
// output projection, the feed-forward's down projection) scaled down by √(2·layers), so the
// stream's variance stays flat however deep the model is.
#pragma once

#include <torch/torch.h>

#include <cmath>

namespace dracarys::init {

constexpr double kStd = 0.02;

inline double residual_std(int64_t layers) { return kStd / std::sqrt(2.0 * static_cast<double>(layers)); }

inline void linear(torch::nn::Linear& layer, double std) {
  torch::NoGradGuard no_grad;
  if (std > 0)
    layer->weight.normal_(0.0, std);
  else
    layer->weight.zero_();  // a zero-initialised projection (ModelConfig::zero_init)
  if (layer->bias.defined()) layer->bias.zero_();
}

}  // namespace dracarys::init
