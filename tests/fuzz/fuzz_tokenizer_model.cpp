// libFuzzer target: the tokenizer model check that runs before sentencepiece sees a checkpoint's
// tokenizer. Bad input may only ever be a DataError.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "data/errors.h"
#include "data/tokenizer_model_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    dracarys::check_tokenizer_model(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const dracarys::DataError&) {
  }
  return 0;
}
