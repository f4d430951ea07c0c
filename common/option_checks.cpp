#include "common/option_checks.h"

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

}  // namespace dracarys
