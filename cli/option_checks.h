// Every numeric option is checked after parsing, in one style: the message names the option,
// its range in plain numbers and the value given. NaN and infinities are never in range.
#pragma once

#include <cstdint>
#include <string>

namespace dracarys {

// Throws std::invalid_argument unless lo <= value <= hi (lo < value when `above_lo`).
void require_number(const std::string& option, double value, double lo, double hi, bool above_lo = false);
// Throws std::invalid_argument unless lo <= value <= hi.
void require_count(const std::string& option, int64_t value, int64_t lo, int64_t hi);

}  // namespace dracarys
