// The one error type for bad input data: its message is a complete, user-facing sentence.
#pragma once

#include <stdexcept>
#include <string>

namespace dracarys {

struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace dracarys
