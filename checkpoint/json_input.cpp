#include "checkpoint/json_input.h"

#include <stdexcept>

namespace dracarys {

namespace {

// Deepest nesting of arrays and objects, counting only brackets outside strings.
int nesting_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > kMaxJsonDepth) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

nlohmann::json parse_untrusted_json(const std::string& text, const std::string& what) {
  if (text.size() > kMaxJsonBytes)
    throw std::invalid_argument(what + " is " + std::to_string(text.size()) +
                                " bytes of JSON, more than the limit of " + std::to_string(kMaxJsonBytes) + " bytes");
  if (nesting_depth(text) > kMaxJsonDepth)
    throw std::invalid_argument(what + " nests JSON deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(what + " is not valid JSON (at byte " + std::to_string(e.byte) + ")");
  } catch (const nlohmann::json::exception&) {
    // out_of_range: a number past what a double or a 64-bit integer holds, such as 2e400.
    throw std::invalid_argument(what + " holds a number too large to read");
  }
}

}  // namespace dracarys
