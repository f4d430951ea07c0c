// What the executables report: JSON that never fails on text that is not UTF-8, and the median
// of timed runs.
#pragma once

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dracarys {

// JSON text of `j` on one line. Text the model made may hold bytes that are not UTF-8 (a cut
// byte-fallback character): they are written as U+FFFD rather than refused.
inline std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The middle value (the upper one of an even count); `values` must not be empty.
inline double median(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2), values.end());
  return values[values.size() / 2];
}

}  // namespace dracarys
