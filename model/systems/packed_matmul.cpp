#include "model/systems/packed_matmul.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "model/systems/cpu_threads.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define DRACARYS_AVX2_KERNEL 1
#define DRACARYS_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace dracarys::kernels {

namespace {

// Where panel p's weights start, in elements: [cols, 8] per panel.
int64_t panel_start(const PackedMatrix& W, int64_t p) { return p * W.cols * kPanelRows; }

// Row r's weight for k, from the packed layout.
float weight(const PackedMatrix& W, int64_t r, int64_t k) {
  const int64_t at = panel_start(W, r / kPanelRows) + k * kPanelRows + r % kPanelRows;
  return W.q8 ? static_cast<float>(W.int8[at]) : W.f32[at];
}

// An output's last step, the same on every path: the row's scale (int8), then the bias.
float finish(float sum, const PackedMatrix& W, const float* b, int64_t r) {
  if (W.q8) sum = sum * W.scales[r];
  if (b) sum = sum + b[r];
  return sum;
}

template <typename T>
std::vector<T> panels_of(const PackedMatrix& P, const float* W, T (*convert)(const float*, int64_t r)) {
  std::vector<T> out(P.panels() * P.cols * kPanelRows, T(0));
  for (int64_t r = 0; r < P.rows; ++r)
    for (int64_t k = 0; k < P.cols; ++k)
      out[panel_start(P, r / kPanelRows) + k * kPanelRows + r % kPanelRows] = convert(W + r * P.cols, k);
  return out;
}

}  // namespace

PackedMatrix pack_f32(const float* W, int64_t rows, int64_t cols) {
  PackedMatrix P;
  P.rows = rows, P.cols = cols;
  P.f32 = panels_of<float>(P, W, [](const float* row, int64_t k) { return row[k]; });
  return P;
}

PackedMatrix pack_q8(const float* W, int64_t rows, int64_t cols) {
  PackedMatrix P;
  P.rows = rows, P.cols = cols, P.q8 = true;
  P.scales.assign(P.panels() * kPanelRows, 0.0f);
  std::vector<float> scaled(rows * cols);  // W[r][k] / scale[r], rounded below
  for (int64_t r = 0; r < rows; ++r) {
    float largest = 0.0f;
    for (int64_t k = 0; k < cols; ++k) largest = std::max(largest, std::fabs(W[r * cols + k]));
    P.scales[r] = largest / 127.0f;
    const float inverse = largest > 0.0f ? 127.0f / largest : 0.0f;
    for (int64_t k = 0; k < cols; ++k) scaled[r * cols + k] = W[r * cols + k] * inverse;
  }
  P.int8 = panels_of<int8_t>(P, scaled.data(), [](const float* row, int64_t k) {
    return static_cast<int8_t>(std::clamp(std::nearbyint(row[k]), -127.0f, 127.0f));
  });
  return P;
}

void unpack_q8(const PackedMatrix& P, float* W) {
  for (int64_t r = 0; r < P.rows; ++r)
    for (int64_t k = 0; k < P.cols; ++k) W[r * P.cols + k] = weight(P, r, k) * P.scales[r];
}

void matmul_packed_reference(const PackedMatrix& W, const float* b, const float* X, float* Y, int64_t B) {
  for (int64_t i = 0; i < B; ++i)
    for (int64_t r = 0; r < W.rows; ++r) {
      float sum = 0.0f;
      for (int64_t k = 0; k < W.cols; ++k) sum = std::fma(weight(W, r, k), X[i * W.cols + k], sum);
      Y[i * W.rows + r] = finish(sum, W, b, r);
    }
}

#ifdef DRACARYS_AVX2_KERNEL
namespace {

// 8 weights of one panel at k, as floats.
DRACARYS_TARGET_AVX2 inline __m256 load_weights(const float* w) { return _mm256_loadu_ps(w); }
DRACARYS_TARGET_AVX2 inline __m256 load_weights(const int8_t* q) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q))));
}

// The micro-kernel: panels [p0, p0+P) by vectors [i0, i0+R), P·R accumulators of 8 outputs each
// held in registers over the whole inner dimension. (Written with compile-time indices, I = r·P + p,
// so that the compiler keeps every accumulator in a register of its own.) acc[r·P + p] sums panel p for vector r.
template <int P, int R, typename T, int... I>
DRACARYS_TARGET_AVX2 inline void tile_sums(const T* const* w, const float* const* x, int64_t cols, __m256* out,
                                           std::integer_sequence<int, I...>) {
  __m256 acc[] = {(static_cast<void>(I), _mm256_setzero_ps())...};
  for (int64_t k = 0; k < cols; ++k) {
    __m256 wk[P];
    for (int p = 0; p < P; ++p) wk[p] = load_weights(w[p] + k * kPanelRows);
    ((acc[I] = _mm256_fmadd_ps(wk[I % P], _mm256_broadcast_ss(x[I / P] + k), acc[I])), ...);
  }
  ((out[I] = acc[I]), ...);
}

template <int P, int R, typename T>
DRACARYS_TARGET_AVX2 void tile(const PackedMatrix& W, const T* packed, const float* b, const float* X, float* Y,
                               int64_t p0, int64_t i0) {
  const T* w[P];
  const float* x[R];
  for (int p = 0; p < P; ++p) w[p] = packed + panel_start(W, p0 + p);
  for (int r = 0; r < R; ++r) x[r] = X + (i0 + r) * W.cols;
  __m256 sums[P * R];
  tile_sums<P, R>(w, x, W.cols, sums, std::make_integer_sequence<int, P * R>{});
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < R; ++r) {
      alignas(32) float out[kPanelRows];
      _mm256_store_ps(out, sums[r * P + p]);
      for (int j = 0; j < kPanelRows; ++j) {
        const int64_t row = (p0 + p) * kPanelRows + j;
        if (row < W.rows) Y[(i0 + r) * W.rows + row] = finish(out[j], W, b, row);
      }
    }
}

template <typename T>
using TileFn = void (*)(const PackedMatrix&, const T*, const float*, const float*, float*, int64_t, int64_t);

// The tile shapes: with few vectors, more panels, so that enough independent sums are in flight.
template <int R, typename T>
DRACARYS_TARGET_AVX2 void vectors_tile(const PackedMatrix& W, const T* packed, const float* b, const float* X, float* Y,
                                       int64_t p0, int64_t p1, int64_t i0) {
  constexpr int kPanels = R == 1 ? 6 : R == 2 ? 4 : R == 3 ? 3 : 2;  // ≤ 15 of the 16 registers
  int64_t p = p0;
  for (; p + kPanels <= p1; p += kPanels) tile<kPanels, R>(W, packed, b, X, Y, p, i0);
  // the last panels, fewer than kPanels, in one tile too: one panel alone is one chain of sums,
  // each add waiting on the one before
  static constexpr TileFn<T> kLast[] = {tile<1, R, T>, tile<std::min(2, kPanels), R, T>,
                                        tile<std::min(3, kPanels), R, T>, tile<std::min(4, kPanels), R, T>,
                                        tile<std::min(5, kPanels), R, T>};
  if (p < p1) kLast[p1 - p - 1](W, packed, b, X, Y, p, i0);
}

template <typename T>
DRACARYS_TARGET_AVX2 void panels_avx2(const PackedMatrix& W, const T* packed, const float* b, const float* X, float* Y,
                                      int64_t B, int64_t p0, int64_t p1) {
  using VectorsFn =
      void (*)(const PackedMatrix&, const T*, const float*, const float*, float*, int64_t, int64_t, int64_t);
  static constexpr VectorsFn kByVectors[] = {vectors_tile<1, T>, vectors_tile<2, T>, vectors_tile<3, T>,
                                             vectors_tile<4, T>, vectors_tile<5, T>, vectors_tile<6, T>};
  for (int64_t i = 0; i < B;) {
    const int64_t vectors = std::min<int64_t>(B - i, 6);
    kByVectors[vectors - 1](W, packed, b, X, Y, p0, p1, i);
    i += vectors;
  }
}

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

}  // namespace
#endif

void matmul_packed(const PackedMatrix& W, const float* b, const float* X, float* Y, int64_t B) {
#ifdef DRACARYS_AVX2_KERNEL
  if (cpu_has_avx2_fma()) {
    parallel_for(W.panels(), [&](int64_t p0, int64_t p1) {
      if (W.q8)
        panels_avx2(W, W.int8.data(), b, X, Y, B, p0, p1);
      else
        panels_avx2(W, W.f32.data(), b, X, Y, B, p0, p1);
    });
    return;
  }
#endif
  matmul_packed_reference(W, b, X, Y, B);
}

}  // namespace dracarys::kernels
