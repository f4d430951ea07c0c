#include "model/systems/decode_kernels.h"

#include "model/systems/cpu_threads.h"
#include "model/systems/vector_clones.h"

#include <algorithm>
#include <cmath>
#include <cstring>

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

// Eight floats in one vector register (GCC's vector extension: AVX in the x86-64-v3 clone).
typedef float Lanes8 __attribute__((vector_size(32)));

DRACARYS_INLINE void load8(Lanes8& v, const float* p) { std::memcpy(&v, p, sizeof v); }

// Lanes [half·8, half·8 + 8) of dot()'s sixteen partial sums, for 2 rows of W by 4 vectors of
// X at once (8 accumulators): each weight chunk is used 4 times and each vector chunk twice.
// Every lane adds the same products in the same order as dot(), so the sums are its bits.
DRACARYS_INLINE void partials_2x4(const float* w0, const float* w1, const float* const* x, int64_t n16, int half,
                                  float out[2][4][kLanes]) {
  Lanes8 a[2][4] = {};
  for (int64_t i = half * 8; i < n16; i += kLanes) {
    Lanes8 u0, u1;
    load8(u0, w0 + i), load8(u1, w1 + i);
    for (int k = 0; k < 4; ++k) {
      Lanes8 v;
      load8(v, x[k] + i);
      a[0][k] += u0 * v;
      a[1][k] += u1 * v;
    }
  }
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < 4; ++k) std::memcpy(&out[r][k][half * 8], &a[r][k], sizeof(Lanes8));
}

// dot()'s last steps, from its sixteen partial sums: the tail, then the partials in order.
DRACARYS_INLINE float finish_dot(const float* partial, const float* a, const float* b, int64_t n16, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = n16; i < n; ++i) sum += a[i] * b[i];
  for (int j = 0; j < kLanes; ++j) sum += partial[j];
  return sum;
}

// Rows [begin, end) of Y[i] = W·X[i] + b for the B vectors of X, in blocks of 2 rows by 4
// vectors (the rest one dot at a time): each weight row is read once for all B vectors.
DRACARYS_VECTOR_CLONES
void matvecs_rows(const float* W, const float* b, const float* X, float* Y, int64_t begin, int64_t end, int64_t rows,
                  int64_t cols, int64_t B) {
  const int64_t n16 = cols / kLanes * kLanes;
  int64_t r = begin;
  for (; r + 2 <= end; r += 2) {
    const float* w[2] = {W + r * cols, W + (r + 1) * cols};
    int64_t i = 0;
    for (; i + 4 <= B; i += 4) {
      const float* x[4] = {X + i * cols, X + (i + 1) * cols, X + (i + 2) * cols, X + (i + 3) * cols};
      float partial[2][4][kLanes];
      partials_2x4(w[0], w[1], x, n16, 0, partial);
      partials_2x4(w[0], w[1], x, n16, 1, partial);
      for (int q = 0; q < 2; ++q)
        for (int k = 0; k < 4; ++k)
          Y[(i + k) * rows + r + q] = finish_dot(partial[q][k], w[q], x[k], n16, cols) + (b ? b[r + q] : 0.0f);
    }
    for (; i < B; ++i)
      for (int q = 0; q < 2; ++q) Y[i * rows + r + q] = dot(w[q], X + i * cols, cols) + (b ? b[r + q] : 0.0f);
  }
  for (; r < end; ++r)
    for (int64_t i = 0; i < B; ++i) Y[i * rows + r] = dot(W + r * cols, X + i * cols, cols) + (b ? b[r] : 0.0f);
}

// Rows [begin, end) of y = W·x + b.
DRACARYS_VECTOR_CLONES
void matvec_rows(const float* W, const float* b, const float* x, float* y, int64_t begin, int64_t end, int64_t cols) {
  for (int64_t r = begin; r < end; ++r) y[r] = dot(W + r * cols, x, cols) + (b ? b[r] : 0.0f);
}

}  // namespace

void matvec(const float* W, const float* b, const float* x, float* y, int64_t rows, int64_t cols) {
  parallel_for(rows, [&](int64_t begin, int64_t end) { matvec_rows(W, b, x, y, begin, end, cols); });
}

void matvecs(const float* W, const float* b, const float* X, float* Y, int64_t rows, int64_t cols, int64_t B) {
  if (B == 1) return matvec(W, b, X, Y, rows, cols);
  parallel_for(rows, [&](int64_t begin, int64_t end) { matvecs_rows(W, b, X, Y, begin, end, rows, cols, B); });
}

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
