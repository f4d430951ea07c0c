#include "data/split.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "data/errors.h"

namespace dracarys {

Split split_by_episode(const std::vector<Utterance>& utterances, double validation_share, uint64_t seed) {
  if (!(validation_share >= 0.0 && validation_share < 1.0))
    throw DataError("validation share must be in [0, 1), got " + std::to_string(validation_share));
  std::vector<std::string> episodes;  // in order of first appearance, so the shuffle is reproducible
  std::map<std::string, size_t> count;
  for (const auto& u : utterances)
    if (count[u.episode]++ == 0) episodes.push_back(u.episode);

  Split split;
  std::set<std::string> val;
  if (validation_share > 0.0) {
    if (episodes.size() < 2)
      throw DataError("cannot split one episode into training and validation; add data or use a validation share of 0");
    std::mt19937_64 rng(seed);
    std::shuffle(episodes.begin(), episodes.end(), rng);
    const double want = validation_share * static_cast<double>(utterances.size());
    size_t have = 0;
    // Never move the last episode: training needs at least one.
    for (size_t i = 0; i + 1 < episodes.size() && static_cast<double>(have) < want; ++i) {
      val.insert(episodes[i]);
      have += count[episodes[i]];
    }
    split.validation_episodes.assign(val.begin(), val.end());
  }
  for (const auto& u : utterances) (val.count(u.episode) ? split.validation : split.train).push_back(u);
  return split;
}

}  // namespace dracarys
