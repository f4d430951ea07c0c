// Dropout (Srivastava et al., 2014): while training, each element is kept with probability
// 1 − p and scaled by 1/(1 − p), or else set to 0; in evaluation and generation it passes its
// input through untouched.
//
// On the CPU the mask is a hash of two numbers, a seed drawn for each call from LibTorch's
// generator and the element's index, so every thread of the team (model/systems/cpu_threads.h)
// makes its share at once, and the backward pass makes the mask again from the seed instead of
// keeping it. LibTorch's own CPU dropout draws the mask element by element from one generator:
// 0.12-0.14 s of a 0.7 s training step at --dropout 0.1 on two cores. On other devices, and for
// other element types, this is LibTorch's dropout.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace dracarys {

// Whether element `index` is kept under `seed` at drop probability p: the mask's definition,
// one element at a time (hashed_dropout computes it for every element).
bool kept_by_dropout(uint64_t seed, int64_t index, double p);

// x·mask/(1 − p) for a float tensor on the CPU, differentiable: the gradient is mask/(1 − p).
torch::Tensor hashed_dropout(const torch::Tensor& x, double p, uint64_t seed);

class HashedDropoutImpl : public torch::nn::Module {
 public:
  explicit HashedDropoutImpl(double p) : p_(p) {}
  torch::Tensor forward(const torch::Tensor& x);
  void set_rate(double p) { p_ = p; }  // a schedule's: 0 turns it off

 private:
  double p_;
};
TORCH_MODULE(HashedDropout);

}  // namespace dracarys
