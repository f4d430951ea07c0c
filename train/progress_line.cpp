#include "train/progress_line.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>

namespace dracarys {

namespace {

constexpr int kBarCells = 20;
// A cell fills in eighths, as tqdm's bars do.
const char* const kEighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};

std::string bar_of(double fraction) {
  const int eighths = static_cast<int>(std::floor(std::clamp(fraction, 0.0, 1.0) * kBarCells * 8));
  std::string bar;
  int cells = 0;
  for (; cells < eighths / 8; ++cells) bar += "█";
  if (cells < kBarCells && eighths % 8 > 0) bar += kEighths[eighths % 8], ++cells;
  return "[" + bar + std::string(static_cast<size_t>(kBarCells - cells), ' ') + "]";
}

// 12345.6 -> "12,346"
std::string with_thousands(double value) {
  std::string digits = fmt::format("{:.0f}", value);
  for (int at = static_cast<int>(digits.size()) - 3; at > 0; at -= 3) digits.insert(static_cast<size_t>(at), ",");
  return digits;
}

}  // namespace

std::string clock_time(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{:02}:{:02}", s / 60, s % 60);
}

std::string progress_line(const Progress& p, bool bar) {
  const std::string step =
      p.max_steps > 0 ? fmt::format("step {}/{}", p.step, p.max_steps) : fmt::format("step {}", p.step);
  const std::string done = fmt::format("{:3.0f}%", 100 * std::clamp(p.fraction, 0.0, 1.0));
  const std::string times = clock_time(p.elapsed_s) + "<" + clock_time(p.remaining_s);
  const std::string speed = p.tokens_per_s > 0 ? with_thousands(p.tokens_per_s) : "?";
  return fmt::format("{} {}{} {} | loss {:.4f} | lr {:.2e} | {} tok/s", step, done, bar ? " " + bar_of(p.fraction) : "",
                     times, p.loss, p.lr, speed);
}

}  // namespace dracarys
