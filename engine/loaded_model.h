// A checkpoint loaded for use (completion, scenes, attention, serving): the model in eval
// mode, its tokenizer, and what the checkpoint says about its training corpus. Shared by
// dracarys-infer and dracarys-serve.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cli/option_table.h"
#include "data/tokenizer.h"
#include "model/decode_weights.h"
#include "model/transformer.h"

namespace dracarys {

struct LoadedModel {
  Transformer model{nullptr};
  Tokenizer tokenizer;
  bool speaker_prefix = true;  // whether the model was trained with "speaker: " prefixes
  torch::Device device{torch::kCPU};
  double load_seconds = 0;
  std::map<std::string, int64_t> speaker_counts;  // the training corpus's speakers (may be unknown: empty)
};

// Loads and checks a checkpoint (every file is untrusted; see checkpoint/checkpoint.h) and puts the
// model in eval mode, so that generation never changes it: several threads may then run it at
// once, each with its own KV cache.
// `kernels` is the attention and decode path to run (model/config.h); `weights` how generation
// holds the product weights (model/decode_weights.h: q8 runs the int8 model everywhere, scoring
// included); the load is logged.
LoadedModel load_for_inference(const std::string& checkpoint, const torch::Device& device,
                               Kernels kernels = Kernels::kFast, WeightFormat weights = WeightFormat::kF32);

// --weights, described once for the programs that generate (dracarys-infer, dracarys-serve).
inline OptionSpec weights_option(const char* group) {
  return OptionSpec("--weights", group,
                    "The product weights generation runs: f32 (as trained), or q8: int8 with one scale per row, "
                    "a quarter of the memory and faster on the CPU (every path, --score too, then runs the int8 "
                    "model; docs/serving.md gives its held-out bits/char beside f32's)")
      .one_of({"f32", "q8"});
}

// The training corpus's speakers with their line counts, most lines first (empty: unknown).
std::vector<std::pair<std::string, int64_t>> speakers_by_count(const LoadedModel& m);

// Whether `name` may be asked for as a speaker: true when it is among the training corpus's
// speakers, or when the checkpoint does not know them (older checkpoints).
bool known_speaker(const LoadedModel& m, const std::string& name);

// The corpus's spelling of a speaker a user typed: `name` itself when it is listed (or the
// checkpoint lists no speakers), else the one listed speaker equal to it ignoring ASCII case
// ("Jon Snow" -> "jon snow"); empty when none matches.
std::string corpus_speaker_name(const LoadedModel& m, const std::string& name);

// The listed speaker nearest to `name` when it is near enough to be a typo of it; else empty.
std::string nearest_speaker(const LoadedModel& m, const std::string& name);

// The corpus's spelling of the speaker `name` that `option` gives (matched as
// corpus_speaker_name does). Throws std::invalid_argument when the checkpoint lists its speakers
// and none matches, with the nearest name when one is near (by typo or by first name) and
// `where_listed`, where the user finds the list.
std::string require_known_speaker(const LoadedModel& m, const std::string& option, const std::string& name,
                                  const std::string& where_listed = "see --list-speakers");

constexpr size_t kMaxPromptBytes = 1 << 20;  // a longer line (or -p) is refused, not tokenised

// Throws DataError when typed text is longer than `max_bytes` or not valid UTF-8.
void check_typed_text(const std::string& typed, size_t max_bytes = kMaxPromptBytes);

}  // namespace dracarys
