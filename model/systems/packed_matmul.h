// The batched one-token step's matrix product, register-blocked: Y = X·Wᵀ + b for B vectors at
// once, with W packed once (at load time) into the layout the kernel streams.
//
// Layout: W [rows, cols] is cut into panels of 8 rows; panel p holds, for k = 0 … cols−1, the 8
// weights W[8p … 8p+7][k] side by side ([panels, cols, 8]; the last panel is padded with zero
// rows). One vector register then holds 8 outputs' weights for one k, and a tile of 2 panels by
// 6 vectors keeps its 12 accumulators (16 rows × 6 vectors) in registers across the whole inner
// dimension: per k, 2 weight loads and 6 broadcasts feed 12 fused multiply-adds.
//
// One summation order for everyone: every output is y = fma(w[k], x[k], y) for k = 0, 1, …,
// cols−1 from y = 0, then the bias (and, for int8, the row's scale) — whatever the tile, the
// batch size or the thread count. So a vector's outputs are the same bits alone or in any batch,
// and the scalar path (a CPU without AVX2/FMA) gives the same bits as the vector one.
//
// int8 (q8): each row's weights as int8 with one scale per row, W[r][k] ≈ q[r][k] · scale[r]
// (scale = max|W[r]| / 127); y = Σ_k q[r][k]·x[k], then y·scale[r] + b[r].
#pragma once

#include <cstdint>
#include <vector>

namespace dracarys::kernels {

constexpr int64_t kPanelRows = 8;

struct PackedMatrix {
  int64_t rows = 0, cols = 0;
  bool q8 = false;
  std::vector<float> f32;     // [panels, cols, 8] when !q8
  std::vector<int8_t> int8;   // [panels, cols, 8] when q8
  std::vector<float> scales;  // [panels · 8] when q8: each row's scale (padding rows: 0)

  int64_t panels() const { return (rows + kPanelRows - 1) / kPanelRows; }
};

// W: [rows, cols] row-major floats.
PackedMatrix pack_f32(const float* W, int64_t rows, int64_t cols);
PackedMatrix pack_q8(const float* W, int64_t rows, int64_t cols);

// What the int8 matrix stands for, W'[r][k] = q[r][k] · scale[r], written back as [rows, cols]
// floats (the model's reference path then runs the same weights the int8 kernel does).
void unpack_q8(const PackedMatrix& P, float* W);

// Y[i] = W·X[i] + b for the B vectors of X: [B, cols] -> Y: [B, rows]; b: [rows] or nullptr.
// The panels are shared among the threads of model/systems/cpu_threads.h.
void matmul_packed(const PackedMatrix& W, const float* b, const float* X, float* Y, int64_t B);

// The same on the calling thread alone (the plain loop the tests compare it with: the order of
// summation above, written out without tiles or vector registers).
void matmul_packed_reference(const PackedMatrix& W, const float* b, const float* X, float* Y, int64_t B);

}  // namespace dracarys::kernels
