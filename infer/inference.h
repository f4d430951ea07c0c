// What dracarys-infer does with a loaded checkpoint: complete prompts (streaming), score a
// text file, and benchmark.
#pragma once

#include <torch/torch.h>

#include <string>

#include "data/tokenizer.h"
#include "model/generate.h"
#include "model/transformer.h"

namespace dracarys {

struct LoadedModel {
  Transformer model{nullptr};
  Tokenizer tokenizer;
  bool speakers = true;  // whether the model was trained with "speaker: " prefixes
  torch::Device device{torch::kCPU};
  double load_seconds = 0;
};

LoadedModel load_for_inference(const std::string& checkpoint, const torch::Device& device);

struct CompleteOptions {
  GenerateOptions generate;
  bool stream = true;   // print text on stdout as it is generated
  bool json = false;    // one JSON object per completion on stdout instead
  bool escape = false;  // show control characters as escapes (stdout is a terminal); never with json
};

// Completes one prompt; returns the completion text. Timings go to stderr (llama.cpp style).
std::string complete(LoadedModel& m, const std::string& prompt, const CompleteOptions& opts);

// Mean loss per token, perplexity and bits per character of a text file, normalised and
// tokenised exactly as training's validation text is. Prints a line (or JSON) on stdout.
void score_file(LoadedModel& m, const std::string& path, bool json);

// Load time, prompt tokens/s, generation tokens/s with and without the KV cache; one JSON line.
void benchmark_inference(LoadedModel& m, int64_t new_tokens);

}  // namespace dracarys
