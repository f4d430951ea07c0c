#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace dracarys {

void SamplingOptions::validate() const {
  if (!(temperature > 0.0) || !std::isfinite(temperature))
    throw std::invalid_argument("temperature must be > 0, got " + std::to_string(temperature));
  if (top_k < 0) throw std::invalid_argument("top-k must be >= 0, got " + std::to_string(top_k));
  if (!(top_p > 0.0 && top_p <= 1.0))
    throw std::invalid_argument("top-p must be in (0, 1], got " + std::to_string(top_p));
}

Sampler::Sampler(const SamplingOptions& opts) : opts_(opts), rng_(opts.seed) { opts_.validate(); }

int64_t Sampler::next(const std::vector<float>& logits) {
  const int64_t n = static_cast<int64_t>(logits.size());
  if (opts_.greedy || opts_.top_k == 1)
    return std::max_element(logits.begin(), logits.end()) - logits.begin();  // first maximum on ties

  // Candidates sorted by logit, most likely first; ties keep the lower id first.
  std::vector<int64_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  int64_t keep = opts_.top_k > 0 ? std::min(opts_.top_k, n) : n;

  // Softmax at the temperature over the kept candidates (max subtracted for stability).
  std::vector<double> p(keep);
  const double top = logits[ids[0]];
  double sum = 0.0;
  for (int64_t i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[ids[i]] - top) / opts_.temperature);
  for (auto& x : p) x /= sum;

  if (opts_.top_p < 1.0) {  // nucleus: the shortest prefix whose mass reaches top_p
    double mass = 0.0;
    int64_t cut = 0;
    while (cut < keep && mass < opts_.top_p) mass += p[cut++];
    keep = std::max<int64_t>(cut, 1);
    p.resize(keep);
  }
  std::discrete_distribution<int64_t> pick(p.begin(), p.end());
  return ids[pick(rng_)];
}

}  // namespace dracarys
