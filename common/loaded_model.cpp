#include "common/loaded_model.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "common/checkpoint.h"
#include "data/errors.h"
#include "data/text.h"

namespace dracarys {

LoadedModel load_for_inference(const std::string& checkpoint, const torch::Device& device) {
  const auto t0 = std::chrono::steady_clock::now();
  auto ckpt = load_checkpoint(checkpoint);
  auto tokenizer = load_tokenizer(ckpt);
  LoadedModel m{load_model(ckpt, device), std::move(tokenizer), true, device, 0, {}};
  m.model->eval();
  auto meta = nlohmann::json::parse(ckpt.meta_json);
  m.speakers = !meta.value("train_options", nlohmann::json::object()).value("no_speakers", false);
  m.speaker_counts = checkpoint_speakers(ckpt);
  m.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

bool known_speaker(const LoadedModel& m, const std::string& name) {
  return m.speaker_counts.empty() || m.speaker_counts.count(name) > 0;
}

void check_typed_text(const std::string& typed, size_t max_bytes) {
  if (typed.size() > max_bytes) throw DataError("prompt is longer than " + std::to_string(max_bytes) + " bytes");
  if (!valid_utf8(typed)) throw DataError("prompt is not valid UTF-8");
}

}  // namespace dracarys
