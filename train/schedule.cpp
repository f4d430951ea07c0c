#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace dracarys {

double schedule_position(const Schedule& s, int64_t step, double elapsed_s) {
  if (s.steps > 0) return static_cast<double>(step + 1) / static_cast<double>(s.steps);
  return s.time_budget_s > 0 ? elapsed_s / s.time_budget_s : 0.0;
}

ScheduleShape schedule_shape_from_string(const std::string& name) {
  if (name == "cosine") return ScheduleShape::kCosine;
  if (name == "wsd") return ScheduleShape::kWsd;
  throw std::invalid_argument("--schedule must be 'cosine' or 'wsd', got '" + name + "'");
}

double learning_rate(const Schedule& s, double position) {
  const double p = std::clamp(position, 0.0, 1.0);
  // Warm-up: a straight line from 0 to the peak.
  if (p < s.warmup) return s.peak_lr * p / s.warmup;
  if (s.shape == ScheduleShape::kWsd) {
    // Stable at the peak, then a straight line down to the floor over the last `cooldown`.
    const double decay_start = std::max(s.warmup, 1.0 - s.cooldown);
    if (p < decay_start) return s.peak_lr;
    const double decay = decay_start < 1 ? (p - decay_start) / (1 - decay_start) : 1.0;
    return s.peak_lr + (s.floor_lr - s.peak_lr) * decay;
  }
  // Decay: half a cosine from the peak to the floor over the rest of the schedule.
  const double decay = s.warmup < 1 ? (p - s.warmup) / (1 - s.warmup) : 1.0;
  return s.floor_lr + 0.5 * (s.peak_lr - s.floor_lr) * (1.0 + std::cos(M_PI * decay));
}

}  // namespace dracarys
