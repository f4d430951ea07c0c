// Stop sequences: text that ends a completion where it first appears, and is never shown.
// Text arrives piece by piece; a piece's end may be the start of a stop sequence that the next
// piece completes (or breaks), so that tail is held back until it is known.
#pragma once

#include <string>
#include <vector>

namespace dracarys {

class StopText {
 public:
  explicit StopText(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Adds a piece; returns the text now safe to show (never part of a stop sequence).
  std::string add(const std::string& piece);
  // The text still held back, at the end of the completion (empty once stopped).
  std::string rest();

  bool stopped() const { return !word_.empty(); }
  const std::string& word() const { return word_; }  // the stop sequence that ended it

 private:
  std::vector<std::string> stops_;
  std::string held_;  // text not yet shown
  std::string word_;
};

}  // namespace dracarys
