// Rotary position embedding (RoFormer, as GPT-NeoX lays it out): instead of adding a position's
// vector to the embedding, attention turns each head's query and key at position p. The head's
// d_k dimensions form d_k/2 pairs (i, i + d_k/2); pair i turns by the angle p·θ_i, with
// θ_i = 10000^(−2i/d_k): fast turns in the first pairs, slow ones in the last.
//
//   (x_i, x_{i+d_k/2})  ─►  (x_i·cos pθ_i − x_{i+d_k/2}·sin pθ_i,  x_i·sin pθ_i + x_{i+d_k/2}·cos pθ_i)
//
// A query turned by mθ and a key turned by nθ have the dot product of the query turned by
// (m − n)θ and the unturned key: the score sees only how far apart they are.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace dracarys {

constexpr double kRotaryBase = 10000.0;

// The angles' cosines and sines for every position below `context`: two [context, d_k/2] tables.
struct RotaryTables {
  torch::Tensor cos, sin;
};
RotaryTables rotary_tables(int64_t context, int64_t dk);

// x: [..., T, d_k] at T consecutive positions; cos, sin: those positions' rows, [T, d_k/2].
torch::Tensor rotate(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// The same for one position's vector x: [d_k], in place; cos, sin: that position's rows [d_k/2].
void rotate_one(float* x, const float* cos, const float* sin, int64_t dk);

}  // namespace dracarys
