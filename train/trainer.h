// The training loop of dracarys-train: data preparation, AdamW with warm-up and cosine decay,
// periodic evaluation with a sample completion, checkpoints, resume, and clean stops.
#pragma once

#include <optional>

#include "checkpoint/checkpoint.h"
#include "train/options.h"
#include "train/schedule.h"

namespace dracarys {

// Trains. `start` is the checkpoint named by --resume or --init-from, loaded once by the caller
// (which merged its settings into `opts`). Returns the process exit code (0 on success, also
// after a stop by signal or --patience). Throws for bad input (caller prints one line).
int run_training(TrainOptions opts, std::optional<Checkpoint> start, const torch::Device& device);

// --benchmark: random tokens, no checkpoint; prints a table and one JSON line.
int run_train_benchmark(const TrainOptions& opts, const torch::Device& device);

// The learning-rate schedule the options describe (train/schedule.h).
Schedule schedule_of(const TrainOptions& o);

}  // namespace dracarys
