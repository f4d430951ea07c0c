#include "model/systems/decode_kernels.h"

#include "model/systems/vector_clones.h"

#include <algorithm>
#include <cmath>

namespace dracarys::kernels {

namespace {

constexpr int kLanes = 16;  // partial sums kept apart: two 8-float vector registers

// a·b over n floats. Always the same order of additions, so the same inputs give the same bits.
DRACARYS_INLINE float dot(const float* a, const float* b, int64_t n) {
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) partial[j] += a[i + j] * b[i + j];
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int j = 0; j < kLanes; ++j) sum += partial[j];
  return sum;
}

}  // namespace

DRACARYS_VECTOR_CLONES
void layer_norm(const float* x, const float* gamma, const float* beta, double eps, float* y, int64_t n) {
  double sum = 0.0, square_sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) square_sum += (x[i] - mean) * (x[i] - mean);
  const double variance = square_sum / static_cast<double>(n);  // biased, as LayerNorm's
  const auto m = static_cast<float>(mean), inv_std = static_cast<float>(1.0 / std::sqrt(variance + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * inv_std * gamma[i] + beta[i];
}

void gelu(float* x, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752f;
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

void relu2(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float r = std::max(x[i], 0.0f);
    x[i] = r * r;
  }
}

void rms_normalise(float* x, int64_t n, double eps) {
  double square_sum = 0.0;
  for (int64_t i = 0; i < n; ++i) square_sum += static_cast<double>(x[i]) * x[i];
  const auto inv_rms = static_cast<float>(1.0 / std::sqrt(square_sum / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) x[i] *= inv_rms;
}

void softcap(float* logits, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) logits[i] = cap * std::tanh(logits[i] / cap);
}

DRACARYS_VECTOR_CLONES
void attend_one(const float* q, const float* K, const float* V, int64_t length, int64_t dk, float scale, float* scores,
                float* out) {
  // scores = K·q, scaled; the newest position sees every cached one, so there is no mask
  float max_score = -INFINITY;
  for (int64_t t = 0; t < length; ++t) {
    scores[t] = dot(K + t * dk, q, dk) * scale;
    max_score = std::max(max_score, scores[t]);
  }
  // softmax: the head's attention filter
  float total = 0.0f;
  for (int64_t t = 0; t < length; ++t) {
    scores[t] = std::exp(scores[t] - max_score);
    total += scores[t];
  }
  const float inv_total = 1.0f / total;
  // filter · V
  std::fill(out, out + dk, 0.0f);
  for (int64_t t = 0; t < length; ++t) {
    const float w = scores[t] * inv_total;
    scores[t] = w;
    for (int64_t j = 0; j < dk; ++j) out[j] += w * V[t * dk + j];
  }
}

}  // namespace dracarys::kernels
