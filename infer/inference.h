// What dracarys-infer does with a loaded checkpoint: complete prompts (streaming), score a
// text file, and benchmark.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "engine/completion.h"
#include "engine/loaded_model.h"
#include "model/generate.h"
#include "model/transformer.h"

namespace dracarys {

// std::getline with a bound: a line longer than kMaxPromptBytes is returned cut just past the
// limit (so check_typed_text refuses it) and its rest is read and dropped; endless input
// without newlines cannot fill memory. A trailing '\r' is removed.
bool read_line(std::istream& in, std::string& line);

// Prints text on stdout at once; with `escape`, control characters other than line ends are
// shown as escapes (stdout is a terminal).
void print_text(const std::string& text, bool escape);

struct CompleteOptions {
  CompletionOptions completion;
  bool json = false;    // one JSON object per completion on stdout instead of the text as it comes
  bool escape = false;  // show control characters as escapes (stdout is a terminal); never with json
};

// Completes one prompt; returns the completion text. Timings go to stderr (llama.cpp style).
std::string complete(LoadedModel& m, const std::string& prompt, const CompleteOptions& opts);

// Standard input given to --score as "-" is read up to this many bytes.
constexpr size_t kMaxScoredStdinBytes = size_t{256} << 20;

// Mean loss per token, perplexity and bits per character of a text file ("-": standard input),
// normalised and tokenised exactly as training's validation text is. Prints a line (or JSON) on
// stdout; with `per_line`, first one per line of the text (see evaluate_line).
void score_file(LoadedModel& m, const std::string& path, bool per_line, bool json);

// Load time, prompt tokens/s, generation tokens/s with and without the KV cache; one JSON line.
void benchmark_inference(LoadedModel& m, int64_t new_tokens);

}  // namespace dracarys
