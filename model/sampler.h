// Picks the next token from a vector of logits: greedy, or temperature / top-k / top-p sampling.
// Runs on the host with its own random engine, so the same seed gives the same text on any device.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace dracarys {

struct SamplingOptions {
  static constexpr double kMaxTemperature = 100.0;  // the hottest any executable or request may ask for

  bool greedy = false;
  double temperature = 0.8;  // > 0; lower is more conservative
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = all
  double top_p = 1.0;        // keep the smallest set whose probability reaches p; 1 = all
  uint64_t seed = 1234;

  // Throws std::invalid_argument naming the bad value.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& opts);
  int64_t next(const std::vector<float>& logits);

 private:
  SamplingOptions opts_;
  std::mt19937_64 rng_;
};

}  // namespace dracarys
