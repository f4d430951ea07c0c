#include "train/training_data.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "data/corpus.h"
#include "data/split.h"

namespace dracarys {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

TrainingData prepare_data(const TrainOptions& o, std::optional<Tokenizer> given) {
  auto t0 = Clock::now();
  CorpusOptions corpus_options;
  corpus_options.speaker_prefix = !o.no_speakers;
  corpus_options.max_file_bytes = static_cast<uint64_t>(o.max_file_mb) << 20;
  corpus_options.max_utterance_bytes = static_cast<uint64_t>(o.max_utterance_bytes);
  corpus_options.name_limit_options = true;
  corpus_options.only_speakers = split_speaker_list(o.only_speakers);
  auto corpus = load_corpus(o.corpus, corpus_options);
  spdlog::info("corpus: {}", corpus.stats.summary());
  if (corpus.stats.mix.size() > 1) spdlog::info("corpus mix: {}", corpus.stats.mix_summary());
  const bool mark = corpus_options.speaker_prefix && mixes_named_and_unnamed(corpus.utterances);
  if (mark) spdlog::info("lines without a speaker start with '{}' where a name would stand", kUnnamedMark);
  auto split = split_by_episode(corpus.utterances, o.validation_share, o.seed);
  const auto train_lines = training_lines(split.train, corpus_options.speaker_prefix, mark);
  const auto val_lines = training_lines(split.validation, corpus_options.speaker_prefix, mark);
  spdlog::info("split by episode: {} training and {} validation utterances ({} validation episodes)",
               split.train.size(), split.validation.size(), split.validation_episodes.size());
  auto t1 = Clock::now();
  const bool trained = !given;
  std::optional<Tokenizer> tok = std::move(given);
  if (trained) {
    TokenizerOptions to;
    to.model_type = o.tokenizer_type;
    to.vocab_size = static_cast<int>(o.model.vocab_size);
    to.exact_vocab_size = o.exact_vocab_size;
    std::vector<std::string> sentences;  // the scene breaks are not text
    std::copy_if(train_lines.begin(), train_lines.end(), std::back_inserter(sentences),
                 [](const std::string& l) { return !l.empty(); });
    tok = Tokenizer::train(sentences, to);
    spdlog::info("tokenizer: {} with {} tokens trained in {:.2f}s", o.tokenizer_type, tok->vocab_size(),
                 seconds_since(t1));
  }
  auto t2 = Clock::now();
  TrainingData p{*tok, tokenize_lines(*tok, train_lines), tokenize_lines(*tok, val_lines),
                 count_speakers(corpus.utterances)};
  p.read_s = std::chrono::duration<double>(t1 - t0).count();
  p.tokenizer_train_s = !trained ? 0.0 : std::chrono::duration<double>(t2 - t1).count();
  p.tokenize_s = seconds_since(t2);
  p.utterances = corpus.utterances.size();
  spdlog::info(
      "tokenised {} + {} tokens ({:.2f} characters per token) in {:.2f}s ({:.0f} chars/s); data ready in {:.2f}s",
      p.train.ids.size(), p.validation.ids.size(), p.train.chars / std::max<size_t>(1, p.train.ids.size()),
      p.tokenize_s, (p.train.chars + p.validation.chars) / std::max(p.tokenize_s, 1e-9), seconds_since(t0));
  return p;
}

void print_data_timings(const TrainOptions& o, const TrainingData& data) {
  const double chars = data.train.chars + data.validation.chars;
  const double tokens = static_cast<double>(data.train.ids.size() + data.validation.ids.size());
  nlohmann::json j = {{"benchmark", "data"},
                      {"corpus", o.corpus},
                      {"utterances", data.utterances},
                      {"characters", chars},
                      {"tokens", tokens},
                      {"read_s", data.read_s},
                      {"tokenizer_train_s", data.tokenizer_train_s},
                      {"tokenize_s", data.tokenize_s},
                      {"tokenize_chars_per_s", chars / std::max(data.tokenize_s, 1e-9)},
                      {"tokenize_tokens_per_s", tokens / std::max(data.tokenize_s, 1e-9)}};
  fmt::print("{}\n", j.dump());
}

void keep_listable_speakers(std::map<std::string, int64_t>& speakers) {
  for (auto it = speakers.begin(); it != speakers.end();)
    it = it->first.size() > kMaxSpeakerNameBytes ? speakers.erase(it) : std::next(it);
  if (speakers.size() <= kMaxSpeakers) return;
  std::vector<std::pair<int64_t, std::string>> by_count;
  for (const auto& [name, count] : speakers) by_count.emplace_back(count, name);
  std::nth_element(by_count.begin(), by_count.begin() + kMaxSpeakers, by_count.end(), std::greater<>());
  spdlog::warn("the corpus has {} speakers; the checkpoint lists the {} with the most lines", speakers.size(),
               kMaxSpeakers);
  speakers.clear();
  for (size_t i = 0; i < kMaxSpeakers; ++i) speakers[by_count[i].second] = by_count[i].first;
}

}  // namespace dracarys
