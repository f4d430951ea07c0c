// One optimisation step, shared by real training and --benchmark so the benchmark measures
// exactly what training does.
#pragma once

#include <torch/torch.h>

#include "model/transformer.h"
#include "train/distributed.h"
#include "train/optimizer.h"

namespace dracarys {

struct TrainOptions;

// The model a run (or --benchmark) starts from: drawn from --seed, with the --kernels it runs,
// on `device`. Every rank draws the same weights; rank 0's are broadcast anyway.
Transformer fresh_model(const TrainOptions& o, const torch::Device& device);

// Forward, cross-entropy, backward (for each of `micro_batches` equal slices of the batch, the
// gradients adding up), gradient averaging across ranks (when `dist` is enabled; it runs behind
// the last backward pass), gradient clipping (when grad_clip > 0), AdamW update. Returns this
// rank's mean loss before the update; when any rank's loss is not finite, returns NaN and updates
// nothing. `signals` carries stop wishes and the schedule position between ranks (distributed.h).
double train_step(Transformer& model, Optimizer& opt, const torch::Tensor& inputs, const torch::Tensor& targets,
                  double grad_clip, int64_t micro_batches = 1, Distributed* dist = nullptr,
                  StepSignals* signals = nullptr);

}  // namespace dracarys
