// One optimisation step, shared by real training and --benchmark so the benchmark measures
// exactly what training does.
#pragma once

#include <torch/torch.h>

#include "model/transformer.h"
#include "train/options.h"

namespace dracarys {

// AdamW with weight decay on weight matrices (every 2-D parameter) only, not on biases or norms.
torch::optim::AdamW make_optimizer(Transformer& model, const TrainOptions& o);
void set_learning_rate(torch::optim::AdamW& opt, double lr);

// Forward, cross-entropy, backward, gradient clipping (when grad_clip > 0), AdamW update.
// Returns the loss before the update. A non-finite loss is returned without updating.
double train_step(Transformer& model, torch::optim::AdamW& opt, const torch::Tensor& inputs,
                  const torch::Tensor& targets, double grad_clip);

}  // namespace dracarys
