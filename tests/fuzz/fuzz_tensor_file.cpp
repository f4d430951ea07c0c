// libFuzzer target: the weights reader (safetensors layout). Bad input may only ever be
// std::invalid_argument, and every tensor it accepts must lie inside the bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include "checkpoint/tensor_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    for (const auto& [name, e] : dracarys::parse_tensor_file(bytes, "fuzzed weights"))
      if (e.offset > size || e.bytes > size - e.offset) std::abort();  // a tensor outside the bytes
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
