// libFuzzer target: a probe file's bytes (checkpoint/probe_file.h) through its parser. Bad input
// may only ever be a std::invalid_argument; what parses must write back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "checkpoint/probe_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto record = dracarys::parse_probe(bytes, "fuzz.probe");
    if (dracarys::parse_probe(dracarys::probe_bytes(record), "again").snapshots.size() != record.snapshots.size())
      std::abort();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
