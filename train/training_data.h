// The training data of dracarys-train: the corpus read and split by episode, the tokenizer
// trained (or taken from a checkpoint), both token streams, and the speakers a checkpoint lists.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "data/batching.h"
#include "data/tokenizer.h"
#include "train/options.h"

namespace dracarys {

// The training data, ready for batching: the tokenizer, both token streams, the speakers, and
// how long each stage of getting there took.
struct TrainingData {
  Tokenizer tokenizer;
  TokenStream train, validation;
  std::map<std::string, int64_t> speaker_counts;  // utterances per speaker in the corpus read
  double read_s = 0, tokenizer_train_s = 0, tokenize_s = 0;
  size_t utterances = 0;
};

// Reads, splits and tokenises the corpus the options name. `given`: the tokenizer to use (a
// checkpoint's, or rank 0's); without it one is trained on the training lines.
TrainingData prepare_data(const TrainOptions& o, std::optional<Tokenizer> given);

// --data-only: how long data preparation took, as one JSON line on stdout.
void print_data_timings(const TrainOptions& o, const TrainingData& data);

// The speakers a checkpoint can list (see kMaxSpeakers): the most frequent, with names short
// enough; the rest still train, they are only left out of the list.
void keep_listable_speakers(std::map<std::string, int64_t>& speakers);

}  // namespace dracarys
