#include "cli/unknown_options.h"

#include <cstdint>

#include "data/text.h"

namespace dracarys {

const std::vector<ReplacedOption>& replaced_options() {
  static const std::vector<ReplacedOption> kReplaced = {
      {"--warmup-steps", "--warmup, a share of the schedule (e.g. --warmup 0.05)"},
  };
  return kReplaced;
}

namespace {

bool is_option(const std::string& word) { return word.size() > 1 && word[0] == '-'; }

// "--name=value" -> "--name"
std::string flag_of(const std::string& word) { return word.substr(0, word.find('=')); }

// The option whose long name is nearest to `flag` (within 3 edits, or one it starts), or "".
std::string nearest_option(const std::string& flag, const std::vector<std::string>& options) {
  const std::string name = flag.substr(flag.find_first_not_of('-'));
  std::string nearest;
  size_t best = SIZE_MAX;
  for (const auto& option : options) {
    const bool prefix = name.size() >= 3 && option.compare(0, name.size(), name) == 0;
    const size_t distance = prefix ? 1 : edit_distance(name, option);
    if (distance < best) best = distance, nearest = option;
  }
  return best <= 3 && best < name.size() ? "--" + nearest : "";
}

std::string joined(const std::vector<std::string>& words) {
  std::string text;
  for (const auto& w : words) text += (text.empty() ? "" : " ") + w;
  return text;
}

}  // namespace

std::string unknown_arguments_text(const std::vector<std::string>& unknown, const std::vector<std::string>& options) {
  for (const auto& word : unknown)
    for (const auto& r : replaced_options())
      if (is_option(word) && flag_of(word) == r.flag) return std::string(r.flag) + " was replaced by " + r.replaced;
  std::string text = "unknown argument(s): " + joined(unknown);
  for (const auto& word : unknown) {
    if (!is_option(word)) continue;
    const std::string nearest = nearest_option(flag_of(word), options);
    if (!nearest.empty()) text += "; " + flag_of(word) + ": did you mean " + nearest + "?";
  }
  // A plain word not after an unknown option is most likely the second word of a value.
  for (size_t i = 0; i < unknown.size(); ++i)
    if (!is_option(unknown[i]) && (i == 0 || !is_option(unknown[i - 1])))
      return text + " (a value with spaces needs quotes)";
  return text;
}

}  // namespace dracarys
