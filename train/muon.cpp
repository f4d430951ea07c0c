#include "train/muon.h"

#include <algorithm>
#include <cmath>

#include "model/systems/blas_threads.h"
#include "model/systems/cpu_threads.h"

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

// Every matrix on the CPU goes to the thread team, one matrix per thread at a time, each with
// BLAS on its own thread; elsewhere (CUDA) the device runs them in turn.
void Muon::orthogonalise(std::vector<torch::Tensor>& updates) const {
  const auto one = [&](int64_t i) {
    auto& u = updates[static_cast<size_t>(i)];
    if (u.defined()) u = newton_schulz(u, options_.ns_steps);
  };
  const auto n = static_cast<int64_t>(updates.size());
  if (matrices_.empty() || !matrices_.front().param.device().is_cpu()) {
    for (int64_t i = 0; i < n; ++i) one(i);
    return;
  }
  OneBlasThreadPerCaller blas_alone;
  parallel_for(n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) one(i);
  });
}

void Muon::step() {
  torch::NoGradGuard no_grad;
  // Momentum and Nesterov's look-ahead, matrix by matrix: U, as [blocks, rows, cols].
  std::vector<torch::Tensor> updates(matrices_.size());
  for (size_t i = 0; i < matrices_.size(); ++i) {
    auto& p = matrices_[i].param;
    if (!p.grad().defined()) continue;
    const auto& g = p.grad();
    auto& m = momentum_[i];
    m.mul_(options_.momentum).add_(g);  // M ← μ·M + G
    const int64_t n = matrices_[i].blocks;
    updates[i] = g.add(m, options_.momentum).view({n, p.size(0) / n, p.size(1)});  // U ← G + μ·M
  }
  orthogonalise(updates);  // O ← NewtonSchulz(U)
  for (size_t i = 0; i < matrices_.size(); ++i) {
    if (!updates[i].defined()) continue;
    auto& p = matrices_[i].param;
    const double rows = static_cast<double>(updates[i].size(1)), cols = static_cast<double>(updates[i].size(2));
    const double scale = std::sqrt(std::max(1.0, rows / cols));
    if (options_.weight_decay > 0) p.mul_(1.0 - lr_ * options_.weight_decay);  // W ← W·(1 − lr·wd)
    p.add_(updates[i].reshape(p.sizes()), -lr_ * scale);                       // W ← W − lr·scale·O
  }
}

}  // namespace dracarys
