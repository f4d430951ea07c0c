// libFuzzer target: a checkpoint's bytes through the container parser and the metadata checks,
// with the hash check off (a fuzzer cannot forge SHA-256, and a crafted file can). Bad input may
// only ever be a CheckpointError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "checkpoint/checkpoint_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    dracarys::decode_checkpoint(std::string(reinterpret_cast<const char*>(data), size), "fuzz.pt",
                                /*check_hash=*/false);
  } catch (const dracarys::CheckpointError&) {
  }
  return 0;
}
