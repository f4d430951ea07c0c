#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace dracarys {

double schedule_position(const Schedule& s, int64_t step, double elapsed_s) {
  if (s.steps > 0) return static_cast<double>(step + 1) / static_cast<double>(s.steps);
  return s.time_budget_s > 0 ? elapsed_s / s.time_budget_s : 0.0;
}

double learning_rate(const Schedule& s, double position) {
  const double p = std::clamp(position, 0.0, 1.0);
  // Warm-up: a straight line from 0 to the peak.
  if (p < s.warmup) return s.peak_lr * p / s.warmup;
  // Decay: half a cosine from the peak to the floor over the rest of the schedule.
  const double decay = s.warmup < 1 ? (p - s.warmup) / (1 - s.warmup) : 1.0;
  return s.floor_lr + 0.5 * (s.peak_lr - s.floor_lr) * (1.0 + std::cos(M_PI * decay));
}

}  // namespace dracarys
