// The learning-rate schedule and the progress line of dracarys-train, with the clock in the
// test's hands: a run's steps are simulated at whatever speed a test asks for.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "train/progress_line.h"
#include "train/schedule.h"

using namespace dracarys;

namespace {

// The rates of a time-budgeted run whose every step takes `step_s` seconds.
std::vector<double> rates_of_timed_run(const Schedule& s, double step_s) {
  std::vector<double> rates;
  double elapsed = 0;
  for (int64_t step = 0; elapsed < s.time_budget_s; ++step, elapsed += step_s)
    rates.push_back(learning_rate(s, schedule_position(s, step, elapsed)));
  return rates;
}

Schedule timed(double budget_s) {
  Schedule s;
  s.peak_lr = 2e-3;
  s.floor_lr = 2e-4;
  s.warmup = 0.05;
  s.time_budget_s = budget_s;
  return s;
}

}  // namespace

TEST(Schedule, ASlowTimedRunStillReachesThePeak) {
  // The reported case: a 3-minute budget on a busy machine, 100 steps taking 58% of it.
  const Schedule s = timed(180);
  const auto rates = rates_of_timed_run(s, 0.58 * 180 / 100);
  const double top = *std::max_element(rates.begin(), rates.end());
  EXPECT_GT(top, 0.99 * s.peak_lr);
  EXPECT_LE(top, s.peak_lr);
  // Warm-up takes the same share of the run as on a fast machine: the peak falls 5% in.
  const auto at_peak = std::max_element(rates.begin(), rates.end()) - rates.begin();
  EXPECT_NEAR(static_cast<double>(at_peak) / static_cast<double>(rates.size()), s.warmup, 0.02);
  // It rises, then falls, and ends near the floor.
  for (size_t i = 1; i < rates.size(); ++i) {
    if (static_cast<int64_t>(i) <= at_peak)
      EXPECT_GE(rates[i], rates[i - 1]) << i;
    else
      EXPECT_LE(rates[i], rates[i - 1]) << i;
  }
  EXPECT_LT(rates.back(), s.floor_lr * 1.1);
}

TEST(Schedule, FastAndSlowMachinesGetTheSameShape) {
  const Schedule s = timed(600);
  const auto fast = rates_of_timed_run(s, 0.1), slow = rates_of_timed_run(s, 2.0);
  // Compare at the same share of the run.
  for (double share : {0.02, 0.05, 0.25, 0.5, 0.9}) {
    const double a = fast[static_cast<size_t>(share * static_cast<double>(fast.size()))];
    const double b = slow[static_cast<size_t>(share * static_cast<double>(slow.size()))];
    EXPECT_NEAR(a, b, 0.03 * s.peak_lr) << "at " << share;
  }
}

TEST(Schedule, ByStepsTheLastStepTrainsAtTheFloorAndTheClockIsIgnored) {
  Schedule s = timed(1);
  s.steps = 200;
  s.warmup = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate(s, schedule_position(s, 0, 1e9)), s.peak_lr / 20);  // 1 of 20 warm-up steps
  EXPECT_DOUBLE_EQ(learning_rate(s, schedule_position(s, 19, 0)), s.peak_lr);        // the warm-up's last step
  EXPECT_DOUBLE_EQ(learning_rate(s, schedule_position(s, 199, 0)), s.floor_lr);
  // Halfway through the decay, halfway between peak and floor.
  EXPECT_NEAR(learning_rate(s, 0.1 + 0.9 / 2), (s.peak_lr + s.floor_lr) / 2, 1e-15);
  // Past the end (a run resumed with more steps) it stays at the floor.
  EXPECT_DOUBLE_EQ(learning_rate(s, 1.5), s.floor_lr);
}

TEST(Schedule, NoWarmupStartsAtThePeak) {
  Schedule s = timed(1);
  s.steps = 3;
  s.warmup = 0;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0), s.peak_lr);
  EXPECT_DOUBLE_EQ(learning_rate(s, schedule_position(s, 0, 0)),
                   s.floor_lr + (s.peak_lr - s.floor_lr) * 0.5 * (1 + std::cos(M_PI / 3)));
}

TEST(ProgressLine, ShowsABarPercentTimesAndRate) {
  Progress p;
  p.step = 252;
  p.max_steps = 600;
  p.fraction = 0.42;
  p.elapsed_s = 83;
  p.remaining_s = 115;
  p.tokens_per_s = 12345.6;
  p.loss = 4.12341;
  p.lr = 2e-3;
  EXPECT_EQ(progress_line(p, /*bar=*/true),
            "step 252/600  42% [████████▍           ] 01:23<01:55 | loss 4.1234 | lr 2.00e-03 | 12,346 tok/s");
  EXPECT_EQ(progress_line(p, /*bar=*/false),
            "step 252/600  42% 01:23<01:55 | loss 4.1234 | lr 2.00e-03 | 12,346 tok/s");
}

TEST(ProgressLine, UnknownsShowAsQuestionMarksNeverAsNegativeOrZero) {
  Progress p;
  p.step = 3;
  p.fraction = 1.2;    // a run past its budget is 100%, not more
  p.remaining_s = -4;  // not "-0s"
  p.tokens_per_s = 0;  // not measured yet: not "0 tok/s"
  const auto line = progress_line(p, true);
  EXPECT_NE(line.find("100% [████████████████████]"), std::string::npos) << line;
  EXPECT_NE(line.find("00:00<?"), std::string::npos) << line;
  EXPECT_NE(line.find("| ? tok/s"), std::string::npos) << line;
  EXPECT_EQ(clock_time(3725), "1:02:05");
  EXPECT_EQ(clock_time(59.6), "01:00");
  EXPECT_EQ(clock_time(NAN), "?");
}

// wsd: warm-up, a stable stretch at the peak, then a straight line down to the floor over the
// last `cooldown` of the run, by steps or by the clock alike.
TEST(Schedule, WsdHoldsThePeakThenDecaysStraightToTheFloor) {
  Schedule s = timed(600);
  s.shape = ScheduleShape::kWsd;
  s.cooldown = 0.3;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0.025), s.peak_lr / 2);  // half-way up the warm-up
  for (double p : {0.05, 0.2, 0.5, 0.69}) EXPECT_DOUBLE_EQ(learning_rate(s, p), s.peak_lr) << p;
  EXPECT_NEAR(learning_rate(s, 0.85), (s.peak_lr + s.floor_lr) / 2, 1e-12);  // half-way down
  EXPECT_DOUBLE_EQ(learning_rate(s, 1.0), s.floor_lr);
  // A slow machine gets the same shape: the peak holds until 70% of the budget, whatever the speed.
  const auto slow = rates_of_timed_run(s, 6.0), fast = rates_of_timed_run(s, 0.5);
  auto last_at_peak = [&](const std::vector<double>& r) {
    size_t last = 0;
    for (size_t i = 0; i < r.size(); ++i)
      if (r[i] == s.peak_lr) last = i;
    return static_cast<double>(last + 1) / static_cast<double>(r.size());
  };
  EXPECT_NEAR(last_at_peak(slow), 0.7, 0.02);
  EXPECT_NEAR(last_at_peak(fast), 0.7, 0.01);
  // By steps, the last step trains at the floor.
  Schedule by_steps = s;
  by_steps.steps = 100;
  EXPECT_DOUBLE_EQ(learning_rate(by_steps, schedule_position(by_steps, 99, 0)), s.floor_lr);
  EXPECT_THROW(schedule_shape_from_string("linear"), std::invalid_argument);
}
