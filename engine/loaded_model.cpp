#include "engine/loaded_model.h"

#include <spdlog/spdlog.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "checkpoint/checkpoint.h"
#include "cli/runtime.h"
#include "data/errors.h"
#include "data/text.h"

namespace dracarys {

namespace {

// Whether the run that wrote `ckpt` trained with "speaker: " in front of each line (it did unless
// its settings say --no-speakers). Settings that are not what a training run writes are refused.
bool stored_speaker_prefix(const Checkpoint& ckpt) {
  const auto settings = checkpoint_meta(ckpt).value("train_options", nlohmann::json::object());
  if (!settings.is_object()) throw CheckpointError("the checkpoint's stored training settings are not a JSON object");
  const auto no_speakers = settings.value("no_speakers", nlohmann::json(false));
  if (!no_speakers.is_boolean())
    throw CheckpointError("the checkpoint's stored setting 'no_speakers' is not true or false");
  return !no_speakers.get<bool>();
}

}  // namespace

LoadedModel load_for_inference(const std::string& checkpoint, const torch::Device& device, Kernels kernels,
                               WeightFormat weights) {
  const auto t0 = std::chrono::steady_clock::now();
  auto ckpt = load_checkpoint(checkpoint);
  auto tokenizer = load_tokenizer(ckpt);
  LoadedModel m{load_model(ckpt, device), std::move(tokenizer), true, device, 0, {}};
  m.model->eval();
  m.speaker_prefix = stored_speaker_prefix(ckpt);
  m.speaker_counts = checkpoint_speakers(ckpt);
  m.model->set_kernels(kernels);
  if (weights != WeightFormat::kF32 && !device.is_cpu())
    throw std::invalid_argument("--weights " + to_string(weights) + " runs on the CPU only");
  if (device.is_cpu()) {  // packed now, so that the first request does not wait for it
    torch::NoGradGuard no_grad;
    m.model->set_weight_format(weights);
  }
  m.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("loaded {} ({} parameters, {} weights) in {:.0f} ms; {}", checkpoint,
               m.model->config().parameter_count(), to_string(weights), m.load_seconds * 1e3, runtime_summary());
  return m;
}

std::vector<std::pair<std::string, int64_t>> speakers_by_count(const LoadedModel& m) {
  std::vector<std::pair<std::string, int64_t>> by_count(m.speaker_counts.begin(), m.speaker_counts.end());
  std::stable_sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return by_count;
}

bool known_speaker(const LoadedModel& m, const std::string& name) {
  return m.speaker_counts.empty() || m.speaker_counts.count(name) > 0;
}

std::string corpus_speaker_name(const LoadedModel& m, const std::string& name) {
  if (known_speaker(m, name)) return name;
  const std::string wanted = ascii_lower(name);
  std::string found;
  for (const auto& [speaker, count] : m.speaker_counts) {
    if (ascii_lower(speaker) != wanted) continue;
    if (!found.empty()) return "";  // two spellings differ only in case: the user must choose
    found = speaker;
  }
  return found;
}

std::string nearest_speaker(const LoadedModel& m, const std::string& name) {
  constexpr size_t kMaxCompared = 256;  // longer names are not typos of a speaker's name
  if (name.size() > kMaxCompared) return "";
  const std::string wanted = ascii_lower(name);
  std::string nearest;
  size_t best = SIZE_MAX;
  for (const auto& [speaker, count] : m.speaker_counts) {
    if (speaker.size() > kMaxCompared) continue;
    const size_t d = edit_distance(wanted, ascii_lower(speaker));
    if (d < best) best = d, nearest = speaker;
  }
  // A typo changes a few characters: at most a third of the name, and at most four.
  if (best <= std::min<size_t>(4, std::max<size_t>(1, name.size() / 3))) return nearest;
  // A first name alone ("Tyrion"): the one speaker whose name starts with it and a space.
  std::string by_prefix;
  for (const auto& [speaker, count] : m.speaker_counts)
    if (ascii_lower(speaker).rfind(wanted + " ", 0) == 0) {
      if (!by_prefix.empty()) return "";  // two of them: the user must choose
      by_prefix = speaker;
    }
  return by_prefix;
}

std::string require_known_speaker(const LoadedModel& m, const std::string& option, const std::string& name,
                                  const std::string& where_listed) {
  const std::string spelled = corpus_speaker_name(m, name);
  if (!spelled.empty()) return spelled;
  const std::string nearest = nearest_speaker(m, name);
  throw std::invalid_argument(option + " '" + escape_control(name) + "' is not a speaker of the training corpus" +
                              (nearest.empty() ? "" : "; did you mean '" + escape_control(nearest) + "'?") + " (" +
                              where_listed + ")");
}

void check_typed_text(const std::string& typed, size_t max_bytes) {
  if (typed.size() > max_bytes) throw DataError("prompt is longer than " + std::to_string(max_bytes) + " bytes");
  if (!valid_utf8(typed)) throw DataError("prompt is not valid UTF-8");
}

}  // namespace dracarys
