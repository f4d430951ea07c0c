#include "train/muon.h"

#include <algorithm>
#include <cmath>

namespace dracarys {

torch::Tensor newton_schulz(const torch::Tensor& G, int64_t steps) {
  // The quintic p(x) = a·x + b·x³ + c·x⁵, applied to the singular values; these coefficients
  // (the speedrun's) push every value in (0, 1] towards 1 in five steps.
  constexpr double a = 3.4445, b = -4.7750, c = 2.0315;
  const bool tall = G.size(-2) > G.size(-1);
  auto X = tall ? G.transpose(-2, -1) : G;  // work on the wide form: X·Xᵀ is the smaller product
  // Scaled so that every singular value is at most 1 (the Frobenius norm bounds the largest).
  X = X / (X.norm(2, {-2, -1}, /*keepdim=*/true) + 1e-7);
  for (int64_t i = 0; i < steps; ++i) {
    auto A = torch::matmul(X, X.transpose(-2, -1));
    auto B = b * A + c * torch::matmul(A, A);
    X = a * X + torch::matmul(B, X);
  }
  return tall ? X.transpose(-2, -1) : X;
}

Muon::Muon(std::vector<Matrix> matrices, MuonOptions options)
    : matrices_(std::move(matrices)), options_(options), lr_(options.lr) {
  for (size_t i = 0; i < matrices_.size(); ++i) {
    const auto& p = matrices_[i].param;
    TORCH_CHECK(p.dim() == 2 && p.size(0) % matrices_[i].blocks == 0, "Muon takes matrices split in equal row blocks");
    momentum_.push_back(state_.register_buffer("m" + std::to_string(i), torch::zeros_like(p)));
  }
}

void Muon::step() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < matrices_.size(); ++i) {
    auto& p = matrices_[i].param;
    if (!p.grad().defined()) continue;
    const auto& g = p.grad();
    auto& m = momentum_[i];
    m.mul_(options_.momentum).add_(g);     // M ← μ·M + G
    auto u = g.add(m, options_.momentum);  // U ← G + μ·M
    const int64_t n = matrices_[i].blocks, rows = p.size(0) / n, cols = p.size(1);
    auto o = newton_schulz(u.view({n, rows, cols}), options_.ns_steps).reshape(p.sizes());
    const double scale = std::sqrt(std::max(1.0, static_cast<double>(rows) / static_cast<double>(cols)));
    p.add_(o, -lr_ * scale);  // W ← W − lr·scale·O
  }
}

}  // namespace dracarys
