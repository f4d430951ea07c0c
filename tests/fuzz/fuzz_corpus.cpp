// libFuzzer target: one corpus file's bytes through the reader its name selects (FUZZ_FILE_NAME:
// "fuzz.csv", "fuzz.srt" or "fuzz.txt"). Bad input may only ever be a DataError: any other
// exception, crash, hang or leak is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "data/corpus.h"
#include "data/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dracarys::CorpusOptions opts;
  opts.max_utterance_bytes = 4096;  // the limit's own path gets exercised too
  try {
    dracarys::parse_corpus_text(FUZZ_FILE_NAME, std::string_view(reinterpret_cast<const char*>(data), size), opts);
  } catch (const dracarys::DataError&) {
  }
  return 0;
}
