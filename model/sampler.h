// Picks the next token from a vector of logits: greedy, or temperature / top-k / top-p sampling.
// Runs on the host with its own random engine, so the same seed gives the same text on any device.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace dracarys {

struct SamplingOptions {
  static constexpr double kMaxTemperature = 100.0;  // the hottest any executable or request may ask for

  bool greedy = false;
  double temperature = 0.8;  // > 0; lower is more conservative
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = all
  double top_p = 1.0;        // keep the smallest set whose probability reaches p; 1 = all
  double min_p = 0.0;        // drop tokens less likely than min_p times the most likely one; 0 = off
  // Penalties on the tokens among the last repeat_last_n seen (the prompt's and the generated):
  double repeat_penalty = 1.0;     // llama.cpp's: a positive logit divided by it, a negative one multiplied; 1 = off
  double presence_penalty = 0.0;   // OpenAI's: subtracted once from each such token's logit
  double frequency_penalty = 0.0;  // OpenAI's: subtracted once per time the token was seen
  int64_t repeat_last_n = 64;      // how far back the penalties look; 0 = off
  uint64_t seed = 1234;

  // Throws std::invalid_argument naming the bad value.
  void validate() const;
  bool penalises() const {
    return repeat_last_n > 0 && (repeat_penalty != 1.0 || presence_penalty != 0.0 || frequency_penalty != 0.0);
  }
};

// The sampling boxes in llama.cpp's order: penalties, then greedy, or top-k, temperature,
// min-p and top-p, and a draw.
class Sampler {
 public:
  explicit Sampler(const SamplingOptions& opts);
  // Notes tokens the model has seen (the prompt), for the penalties.
  void remember(const std::vector<int64_t>& ids);
  // Picks the next token from the model's logits, and remembers it.
  int64_t next(const std::vector<float>& logits);

 private:
  std::vector<float> penalised(std::vector<float> logits) const;
  int64_t pick(const std::vector<float>& logits);
  int64_t draw(const std::vector<float>& logits);  // temperature alone, without sorting

  SamplingOptions opts_;
  std::mt19937_64 rng_;
  std::deque<int64_t> recent_;  // the last repeat_last_n tokens seen, oldest first
};

}  // namespace dracarys
