#include "train/training_state.h"

#include <type_traits>

#include "checkpoint/checkpoint_format.h"

namespace dracarys {

namespace {
constexpr int64_t kMaxStoredSteps = int64_t{1} << 40;  // far beyond any run; refuses nonsense
constexpr double kNoBestYet = 1e30;                    // JSON has no infinity
}  // namespace

nlohmann::json TrainingState::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for_each_field(*this, [&](const char* key, const auto& member, Kind kind) {
    if (kind == Kind::kLoss && !std::isfinite(static_cast<double>(member)))
      j[key] = kNoBestYet;
    else
      j[key] = member;
  });
  return j;
}

TrainingState TrainingState::from_json(const nlohmann::json& state, const std::string& path) {
  auto bad = [&](const std::string& what) { return CheckpointError(path + ": checkpoint's training state " + what); };
  if (!state.is_object()) throw bad("is not a JSON object");
  TrainingState s;
  for_each_field(s, [&](const char* key, auto& member, Kind kind) {
    if (!state.contains(key)) return;
    const auto& v = state[key];
    if constexpr (std::is_integral_v<std::decay_t<decltype(member)>>) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxStoredSteps)
        throw bad(std::string("has '") + key + "' that is not a whole number in 0.." + std::to_string(kMaxStoredSteps));
      member = v.get<int64_t>();
    } else {
      const bool non_negative = kind == Kind::kSeconds;
      if (!v.is_number() || !std::isfinite(v.get<double>()) || (non_negative && v.get<double>() < 0))
        throw bad(std::string("has '") + key + "' that is not a finite" + (non_negative ? " non-negative" : "") +
                  " number");
      member = v.get<double>();
    }
  });
  if (s.best_val_loss >= kNoBestYet) s.best_val_loss = INFINITY;
  return s;
}

}  // namespace dracarys
