// JSON that comes from outside (a checkpoint's metadata) is parsed with limits: nlohmann's
// parser and printer recurse once per level, so a deeply nested document would overflow the
// stack, and a huge one would be parsed before anything could refuse it.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace dracarys {

constexpr size_t kMaxJsonBytes = 16u << 20;  // far above any metadata we write (a few KB)
constexpr int kMaxJsonDepth = 32;            // ours nests three levels

// Parses `text`; throws std::invalid_argument naming `what` when it is larger or deeper than
// the limits or is not valid JSON (with the byte offset, in our words).
nlohmann::json parse_untrusted_json(const std::string& text, const std::string& what);

}  // namespace dracarys
