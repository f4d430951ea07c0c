// The learning-rate schedule of dracarys-train, drawn over one axis from 0 (the run's start) to 1
// (its end): a linear warm-up to the peak rate, then either a cosine decay to the floor
// (--schedule cosine), or a stable stretch at the peak and a straight cool-down to the floor over
// the last --cooldown share of the run (--schedule wsd: warm-up, stable, decay; the "trapezoid").
//
//   cosine    peak                         wsd     peak
//   lr ▲     ╭──╮_                         lr ▲   ╭──────────╮
//      │    ╱     ‾‾╲__                       │  ╱            ╲
//      │   ╱           ‾‾╲___ floor           │ ╱              ╲ floor
//      └──┴─────────────────────►             └┴───────────┴────┴─► position
//         0  warmup            1               0 warmup  1−cooldown 1
//
// Warm-up and decay are measured in the same unit, so a slow machine gets the same shape as a
// fast one: by steps when the run has a step count (then a resumed run repeats the same rates bit
// for bit), else by the share of the time budget spent.
#pragma once

#include <cstdint>
#include <string>

namespace dracarys {

enum class ScheduleShape { kCosine, kWsd };
ScheduleShape schedule_shape_from_string(const std::string& name);  // "cosine" or "wsd"

struct Schedule {
  ScheduleShape shape = ScheduleShape::kCosine;  // --schedule
  double cooldown = 0.3;                         // --cooldown: wsd's share of the schedule spent decaying
  double peak_lr = 2e-3;                         // --lr
  double floor_lr = 2e-4;                        // --min-lr, reached at position 1
  double warmup = 0.05;                          // --warmup: share of the schedule spent warming up
  int64_t steps = 0;                             // --schedule-steps, else --max-steps; 0: follow the clock
  double time_budget_s = 0;                      // --time-budget, used when steps is 0
};

// Where a run stands, 0..1 (and past 1 when it runs on): `step` counts the steps done before
// this one, `elapsed_s` the seconds trained so far. By steps, the position is that of this step's
// end, so that the last of N steps trains at the floor rate.
double schedule_position(const Schedule& s, int64_t step, double elapsed_s);

// The rate at `position`: peak x position / warmup during the warm-up, then the cosine from the
// peak down to the floor, or (wsd) the peak until 1 − cooldown and a straight line down to the
// floor at 1. Positions outside 0..1 are clamped.
double learning_rate(const Schedule& s, double position);

}  // namespace dracarys
