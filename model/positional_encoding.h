// Positional encoding: tells the model where in the sequence each token stands.
// Sinusoidal (the fixed table of "Attention Is All You Need") or learned (one vector per position).
#pragma once

#include <torch/torch.h>

#include "model/config.h"

namespace dracarys {

class PositionalEncodingImpl : public torch::nn::Module {
 public:
  explicit PositionalEncodingImpl(const ModelConfig& cfg);
  // The encodings of positions [start, start + length): shape [length, d_model].
  torch::Tensor forward(int64_t start, int64_t length);
  void init_weights();  // a learned table: normal, std 0.02; the sinusoidal table is fixed

 private:
  torch::Tensor table_;  // sinusoidal: a buffer; learned: a parameter
};
TORCH_MODULE(PositionalEncoding);

}  // namespace dracarys
