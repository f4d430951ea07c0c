#include "engine/stop_text.h"

#include <algorithm>

namespace dracarys {

std::string StopText::add(const std::string& piece) {
  if (stopped()) return "";
  held_ += piece;
  // The first stop sequence to appear ends the text just before it.
  size_t first = std::string::npos;
  for (const auto& stop : stops_) {
    const size_t at = held_.find(stop);
    if (at < first) first = at, word_ = stop;
  }
  if (first != std::string::npos) {
    std::string shown = held_.substr(0, first);
    held_.clear();
    return shown;
  }
  // Hold back the longest tail that begins some stop sequence.
  size_t keep = 0;
  for (const auto& stop : stops_)
    for (size_t n = std::min(stop.size() - 1, held_.size()); n > keep; --n)
      if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
        keep = n;
        break;
      }
  std::string shown = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return shown;
}

std::string StopText::rest() {
  std::string shown;
  shown.swap(held_);
  return stopped() ? "" : shown;
}

}  // namespace dracarys
