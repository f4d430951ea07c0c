#include "engine/speaker_names.h"

#include <limits>

#include "data/corpus.h"
#include "model/generate.h"

namespace dracarys {

SpeakerNames::SpeakerNames(const LoadedModel& m) : nodes_(1) {
  if (!m.speaker_prefix) return;
  for (const auto& [name, count] : m.speaker_counts) {
    openings_.push_back(speaker_line(name, ""));
    const auto ids = m.tokenizer.encode(openings_.back());
    if (ids.empty()) continue;
    size_t node = 0;
    for (TokenId id : ids) {
      auto [at, added] = nodes_[node].next.emplace(id, nodes_.size());
      if (added) nodes_.emplace_back();
      node = at->second;
    }
    if (nodes_[node].speaker < 0) nodes_[node].speaker = static_cast<int64_t>(names_.size());
    names_.push_back(name);
    longest_ = std::max<int64_t>(longest_, static_cast<int64_t>(ids.size()));
  }
}

std::string SpeakerNames::pick(LoadedModel& m, const std::vector<TokenId>& scene,
                               const SamplingOptions& sampling) const {
  size_t node = 0;
  GenerateOptions g;
  g.sampling = sampling;
  g.max_new_tokens = longest_;
  g.mask_logits = [&](std::vector<float>& logits) {
    std::vector<float> kept(logits.size(), -std::numeric_limits<float>::infinity());
    for (const auto& [id, child] : nodes_[node].next) kept[static_cast<size_t>(id)] = logits[static_cast<size_t>(id)];
    logits.swap(kept);
  };
  // Room for the longest opening after the scene, so that the window never slides mid-name.
  const int64_t room = std::max<int64_t>(1, m.model->config().context - longest_);
  generate(m.model, last_context(scene, room), g, [&](int64_t id) {
    node = nodes_[node].next.at(id);
    return nodes_[node].speaker < 0;
  });
  return nodes_[node].speaker < 0 ? "" : names_[static_cast<size_t>(nodes_[node].speaker)];
}

}  // namespace dracarys
