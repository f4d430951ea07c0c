// dracarys-train's optimizer (--optimizer):
//   adamw  AdamW for every parameter, with weight decay on the weight matrices only;
//   muon   Muon (train/muon.h) for the decoder blocks' weight matrices (Q/K/V, the output
//          projection, the feed-forward's two), AdamW for the rest: the token embedding, a
//          learned positional table, an untied head, biases and layer-norm gains.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_format.h"
#include "model/transformer.h"
#include "train/muon.h"
#include "train/options.h"

namespace dracarys {

class Optimizer {
 public:
  Optimizer(Transformer& model, const TrainOptions& o);

  // The schedule's rate as a share of its peak: AdamW runs at --lr times it, Muon at --muon-lr times it.
  void set_rate_factor(double factor);
  void step();
  // Forgets every gradient (the next backward pass writes fresh tensors rather than adding into zeros).
  void drop_gradients();

  // The state a checkpoint keeps: AdamW's moments in c.optimizer, Muon's momentum in c.muon.
  void save_to(Checkpoint& c) const;
  // Reads them back; throws CheckpointError or std::invalid_argument when they do not fit.
  void load_from(const Checkpoint& c);

  bool uses_muon() const { return muon_ != nullptr; }
  // The Muon share of a step's work is measured by --benchmark: this many floating-point
  // operations per step go to Newton–Schulz.
  double newton_schulz_flops() const;

 private:
  std::vector<torch::Tensor> params_;  // every parameter of the model
  std::unique_ptr<torch::optim::AdamW> adamw_;
  std::unique_ptr<Muon> muon_;
  double adamw_peak_, muon_peak_;
  int64_t ns_steps_;
};

// After loading AdamW's state: every moment has its parameter's shape and the step counts are
// sane. Throws std::invalid_argument.
void check_optimizer_state(torch::optim::AdamW& opt);

}  // namespace dracarys
