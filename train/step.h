// One optimisation step, shared by real training and --benchmark so the benchmark measures
// exactly what training does.
#pragma once

#include <torch/torch.h>

#include "model/transformer.h"
#include "train/distributed.h"
#include "train/options.h"

namespace dracarys {

// AdamW with weight decay on weight matrices (every 2-D parameter) only, not on biases or norms.
torch::optim::AdamW make_optimizer(Transformer& model, const TrainOptions& o);
void set_learning_rate(torch::optim::AdamW& opt, double lr);
// After loading a checkpoint's optimizer state: every moment has its parameter's shape and the
// step counts are sane. Throws std::invalid_argument.
void check_optimizer_state(torch::optim::AdamW& opt);

// Forward, cross-entropy, backward (for each of `micro_batches` equal slices of the batch, the
// gradients adding up), gradient averaging across ranks (when `dist` is enabled; it runs behind
// the last backward pass), gradient clipping (when grad_clip > 0), AdamW update. Returns this
// rank's mean loss before the update; when any rank's loss is not finite, returns NaN and updates
// nothing. `signals` carries stop wishes and the schedule position between ranks (distributed.h).
double train_step(Transformer& model, torch::optim::AdamW& opt, const torch::Tensor& inputs,
                  const torch::Tensor& targets, double grad_clip, int64_t micro_batches = 1,
                  Distributed* dist = nullptr, StepSignals* signals = nullptr);

}  // namespace dracarys
