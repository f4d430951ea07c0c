#include "cli/option_checks.h"

#include "cli/option_table.h"

#include <cctype>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace dracarys {

namespace {
// 2e-3, 0.5, 86400, 1e+12: short and exact enough for a message.
std::string plain(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}
}  // namespace

void require_number(const std::string& option, double value, double lo, double hi, bool above_lo) {
  const bool ok = std::isfinite(value) && (above_lo ? value > lo : value >= lo) && value <= hi;
  if (!ok)
    throw std::invalid_argument(option + " must be a number in " + (above_lo ? "(" : "[") + plain(lo) + ", " +
                                plain(hi) + "], got " + plain(value));
}

void require_count(const std::string& option, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi)
    throw std::invalid_argument(option + " must be a whole number from " + std::to_string(lo) + " to " +
                                std::to_string(hi) + ", got " + std::to_string(value));
}

double parse_duration(const std::string& text) {
  if (text.empty()) throw std::invalid_argument("empty duration");
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t used = 0;
    double v;
    try {
      v = std::stod(text.substr(i), &used);
    } catch (const std::exception&) {
      throw std::invalid_argument("bad duration '" + text + "' (use e.g. 90s, 10m, 1h30m)");
    }
    if (std::isnan(v)) throw std::invalid_argument("bad duration '" + text + "' (use e.g. 90s, 10m, 1h30m)");
    i += used;
    double unit = 1;
    if (i < text.size()) {
      switch (std::tolower(static_cast<unsigned char>(text[i]))) {
        case 's':
          unit = 1;
          break;
        case 'm':
          unit = 60;
          break;
        case 'h':
          unit = 3600;
          break;
        default:
          throw std::invalid_argument("bad duration '" + text + "' (use e.g. 90s, 10m, 1h30m)");
      }
      ++i;
    }
    if (!(v >= 0)) throw std::invalid_argument("duration must not be negative: '" + text + "'");
    total += v * unit;
  }
  if (!(total <= kMaxDurationSeconds))
    throw std::invalid_argument("duration '" + text + "' is longer than a year (" +
                                std::to_string(static_cast<int64_t>(kMaxDurationSeconds)) + " s)");
  return total;
}

}  // namespace dracarys
