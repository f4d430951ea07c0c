// The counters a training run keeps and a checkpoint saves, so that a resumed run continues
// exactly where it stopped. One list of fields (for_each_field) writes, reads and checks them.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace dracarys {

struct TrainingState {
  int64_t step = 0;                 // optimisation steps taken
  double learning_rate = 0;         // this step's, from the schedule (recomputed each step; not saved)
  double elapsed_s = 0;             // seconds of training before this process started
  double best_val_loss = INFINITY;  // best validation loss so far, at best_step
  int64_t best_step = 0;
  int64_t evals_since_best = 0;  // evaluations without improvement, for --patience
  double loss_sum = 0;           // training loss summed since the last evaluation
  int64_t loss_count = 0;        // steps in that sum

  // The saved fields: (key, member, kind), where kind says what a stored value may be.
  enum class Kind { kCount, kSeconds, kLoss };
  template <class State, class Visit>
  static void for_each_field(State& s, Visit&& visit) {
    visit("step", s.step, Kind::kCount);
    visit("elapsed_s", s.elapsed_s, Kind::kSeconds);
    visit("best_val_loss", s.best_val_loss, Kind::kLoss);
    visit("best_step", s.best_step, Kind::kCount);
    visit("evals_since_best", s.evals_since_best, Kind::kCount);
    visit("loss_sum", s.loss_sum, Kind::kLoss);
    visit("loss_count", s.loss_count, Kind::kCount);
  }

  nlohmann::json to_json() const;
  // A checkpoint's "state" object, every field checked (it comes from a file: a negative step,
  // say, would train with a negative learning rate). Missing keys keep their defaults. Throws
  // CheckpointError naming `path` and the field.
  static TrainingState from_json(const nlohmann::json& state, const std::string& path);
};

}  // namespace dracarys
