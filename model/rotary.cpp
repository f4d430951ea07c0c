#include "model/rotary.h"

#include <cmath>

namespace dracarys {

RotaryTables rotary_tables(int64_t context, int64_t dk) {
  const int64_t half = dk / 2;
  // θ_i = base^(−2i/d_k), computed in double and stored as float
  auto theta = torch::pow(kRotaryBase, torch::arange(half, torch::kDouble) * (-2.0 / static_cast<double>(dk)));
  auto angle = torch::outer(torch::arange(context, torch::kDouble), theta);  // [context, d_k/2]: p·θ_i
  return {torch::cos(angle).to(torch::kFloat), torch::sin(angle).to(torch::kFloat)};
}

torch::Tensor rotate(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto a = x.narrow(-1, 0, half), b = x.narrow(-1, half, half);  // the first and second of each pair
  return torch::cat({a * cos - b * sin, a * sin + b * cos}, -1);
}

void rotate_one(float* x, const float* cos, const float* sin, int64_t dk) {
  const int64_t half = dk / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    const float a_cos = a * cos[i], b_sin = b * sin[i], a_sin = a * sin[i], b_cos = b * cos[i];
    x[i] = a_cos - b_sin;
    x[i + half] = a_sin + b_cos;
  }
}

}  // namespace dracarys
