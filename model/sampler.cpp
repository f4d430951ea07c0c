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
  if (!(min_p >= 0.0 && min_p <= 1.0))
    throw std::invalid_argument("min-p must be in [0, 1], got " + std::to_string(min_p));
  if (!(repeat_penalty > 0.0) || !std::isfinite(repeat_penalty))
    throw std::invalid_argument("repeat penalty must be > 0, got " + std::to_string(repeat_penalty));
  if (!std::isfinite(presence_penalty) || !std::isfinite(frequency_penalty))
    throw std::invalid_argument("presence and frequency penalties must be finite");
  if (repeat_last_n < 0)
    throw std::invalid_argument("repeat-last-n must be >= 0, got " + std::to_string(repeat_last_n));
}

Sampler::Sampler(const SamplingOptions& opts) : opts_(opts), rng_(opts.seed) { opts_.validate(); }

void Sampler::remember(const std::vector<int64_t>& ids) {
  if (opts_.repeat_last_n == 0) return;
  for (auto id : ids) {
    recent_.push_back(id);
    if (static_cast<int64_t>(recent_.size()) > opts_.repeat_last_n) recent_.pop_front();
  }
}

int64_t Sampler::next(const std::vector<float>& logits) {
  const int64_t id = opts_.penalises() ? pick(penalised(logits)) : pick(logits);
  remember({id});
  return id;
}

// Temperature alone: a draw from the softmax of every token, in id order, with no sort (a token
// costs O(vocab), not O(vocab log vocab): the server samples every request of a batch on one
// thread).
int64_t Sampler::draw(const std::vector<float>& logits) {
  const double top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> w(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) sum += w[i] = std::exp((logits[i] - top) / opts_.temperature);
  const double u = std::generate_canonical<double, 53>(rng_) * sum;
  double cumulative = 0.0;
  for (size_t i = 0; i < w.size(); ++i)
    if ((cumulative += w[i]) > u && w[i] > 0.0) return static_cast<int64_t>(i);
  for (size_t i = w.size(); i-- > 0;)  // u at the very top of the range: the last token with weight
    if (w[i] > 0.0) return static_cast<int64_t>(i);
  return 0;
}

// The penalties, as llama.cpp applies them: for each token among the recent ones, seen c times,
// its logit is divided (if positive) or multiplied (if negative) by repeat_penalty, then
// c · frequency_penalty + presence_penalty is subtracted.
std::vector<float> Sampler::penalised(std::vector<float> logits) const {
  std::vector<int64_t> seen;
  std::vector<int64_t> count(logits.size(), 0);
  for (auto id : recent_)
    if (id >= 0 && id < static_cast<int64_t>(logits.size()) && count[id]++ == 0) seen.push_back(id);
  for (auto id : seen) {
    float& l = logits[id];
    l = l > 0 ? static_cast<float>(l / opts_.repeat_penalty) : static_cast<float>(l * opts_.repeat_penalty);
    l -= static_cast<float>(count[id] * opts_.frequency_penalty + opts_.presence_penalty);
  }
  return logits;
}

int64_t Sampler::pick(const std::vector<float>& logits) {
  const int64_t n = static_cast<int64_t>(logits.size());
  if (opts_.greedy || opts_.top_k == 1)
    return std::max_element(logits.begin(), logits.end()) - logits.begin();  // first maximum on ties
  if (opts_.top_k == 0 && opts_.top_p >= 1.0 && opts_.min_p <= 0.0) return draw(logits);

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

  if (opts_.min_p > 0.0) {  // min-p: only tokens at least min_p times as likely as the first
    int64_t cut = 1;
    while (cut < keep && p[cut] >= opts_.min_p * p[0]) ++cut;
    keep = cut;
    p.resize(keep);
    sum = 0.0;
    for (auto x : p) sum += x;
    for (auto& x : p) x /= sum;
  }
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
