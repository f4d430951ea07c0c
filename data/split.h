// Train/validation split by episode: no episode has lines on both sides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/corpus.h"

namespace dracarys {

struct Split {
  std::vector<Utterance> train, validation;
  std::vector<std::string> validation_episodes;
};

// Shuffles the episodes with `seed` and moves whole episodes to validation until it holds at
// least `validation_share` of the utterances. Utterances keep their corpus order on each side.
// A share of 0 gives an empty validation set; a positive share with a single episode is an error.
Split split_by_episode(const std::vector<Utterance>& utterances, double validation_share, uint64_t seed);

}  // namespace dracarys
