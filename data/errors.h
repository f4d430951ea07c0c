// The one error type for bad input data: its message is a complete, user-facing sentence.
#pragma once

#include <stdexcept>
#include <string>

namespace dracarys {

// `text` with each NUL byte written as \x00: what() is a C string, and a message holding text
// from a file would otherwise end at its first NUL.
inline std::string visible_nul(std::string text) {
  for (size_t at; (at = text.find('\0')) != std::string::npos;) text.replace(at, 1, "\\x00");
  return text;
}

struct DataError : std::runtime_error {
  explicit DataError(const std::string& message) : std::runtime_error(visible_nul(message)) {}
  explicit DataError(const char* message) : std::runtime_error(message) {}
};

}  // namespace dracarys
