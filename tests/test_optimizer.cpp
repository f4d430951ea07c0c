// Muon (train/muon.h): Newton–Schulz orthogonalises, and a step is the orthogonalised Nesterov
// momentum, block by block, scaled as the header says.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "model/systems/blas_threads.h"
#include "model/systems/cpu_threads.h"
#include "train/muon.h"

using namespace dracarys;

namespace {

// A [rows, cols] matrix with the given singular values and random singular vectors.
torch::Tensor with_singular_values(int64_t rows, int64_t cols, const torch::Tensor& values) {
  const int64_t k = std::min(rows, cols);
  auto U = std::get<0>(torch::linalg_qr(torch::randn({rows, k}, torch::kDouble)));
  auto V = std::get<0>(torch::linalg_qr(torch::randn({cols, k}, torch::kDouble)));
  return torch::matmul(U * values.to(torch::kDouble), V.t()).to(torch::kFloat);
}

}  // namespace

TEST(NewtonSchulz, SingularValuesComeOutNearOneWhateverTheyWere) {
  torch::manual_seed(1);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 64}, {96, 32}, {32, 96}, {256, 1024}}) {
    const int64_t k = std::min(rows, cols);
    // Singular values spread over two orders of magnitude, as a gradient's are.
    auto values = torch::logspace(-1, 1, k, 10.0, torch::kDouble);
    auto G = with_singular_values(rows, cols, values);
    auto X = newton_schulz(G);
    ASSERT_EQ(X.sizes(), G.sizes());
    auto s = torch::linalg_svdvals(X.to(torch::kDouble));
    EXPECT_GT(s.min().item<double>(), 0.5) << rows << "x" << cols;
    EXPECT_LT(s.max().item<double>(), 1.3) << rows << "x" << cols;
    // It keeps G's singular vectors: X ≈ U·Vᵀ, the orthogonal factor of G.
    auto svd = torch::linalg_svd(G.to(torch::kDouble), /*full_matrices=*/false);
    auto polar = torch::matmul(std::get<0>(svd), std::get<2>(svd));
    const double cosine = (X.to(torch::kDouble) * polar).sum().item<double>() /
                          (X.to(torch::kDouble).norm().item<double>() * polar.norm().item<double>());
    EXPECT_GT(cosine, 0.97) << rows << "x" << cols;
  }
  // A batch is orthogonalised matrix by matrix.
  auto batch = torch::randn({3, 16, 48});
  auto together = newton_schulz(batch);
  for (int64_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(together[i], newton_schulz(batch[i]), 1e-5, 1e-6));
}

TEST(Muon, AStepIsTheOrthogonalisedNesterovMomentumOfEachBlock) {
  torch::manual_seed(2);
  // A fused [3·4, 4] projection (three 4x4 blocks) and a tall [8, 4] matrix.
  auto fused = torch::randn({12, 4}).requires_grad_(), tall = torch::randn({8, 4}).requires_grad_();
  const auto fused0 = fused.detach().clone(), tall0 = tall.detach().clone();
  MuonOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  Muon muon({{fused, 3}, {tall, 1}}, o);
  const auto g1f = torch::randn({12, 4}), g2f = torch::randn({12, 4}), g1t = torch::randn({8, 4}),
             g2t = torch::randn({8, 4});
  for (int step = 0; step < 2; ++step) {
    fused.mutable_grad() = step == 0 ? g1f : g2f;
    tall.mutable_grad() = step == 0 ? g1t : g2t;
    muon.step();
  }
  auto expect = [&](const torch::Tensor& w0, const torch::Tensor& g1, const torch::Tensor& g2, int64_t blocks) {
    const int64_t rows = w0.size(0) / blocks, cols = w0.size(1);
    const double scale = std::sqrt(std::max(1.0, double(rows) / double(cols)));
    auto orth = [&](const torch::Tensor& u) {
      std::vector<torch::Tensor> parts;
      for (int64_t b = 0; b < blocks; ++b) parts.push_back(newton_schulz(u.narrow(0, b * rows, rows)));
      return torch::cat(parts, 0);
    };
    auto m1 = g1.clone();  // M = 0.9·0 + g1
    auto w1 = w0 - 0.1 * scale * orth(g1 + 0.9 * m1);
    auto m2 = 0.9 * m1 + g2;
    return w1 - 0.1 * scale * orth(g2 + 0.9 * m2);
  };
  EXPECT_TRUE(torch::allclose(fused.detach(), expect(fused0, g1f, g2f, 3), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(tall.detach(), expect(tall0, g1t, g2t, 1), 1e-5, 1e-5));
  // The momentum is the state a checkpoint keeps.
  auto buffers = muon.state().named_buffers();
  EXPECT_TRUE(torch::allclose(buffers["m0"], 0.9 * g1f + g2f, 1e-6, 1e-6));
  // Orthogonalising each block apart is not the same as orthogonalising the whole.
  EXPECT_FALSE(torch::allclose(newton_schulz(g1f),
                               torch::cat({newton_schulz(g1f.narrow(0, 0, 4)), newton_schulz(g1f.narrow(0, 4, 4)),
                                           newton_schulz(g1f.narrow(0, 8, 4))}),
                               1e-3, 1e-3));
}

// Decoupled weight decay: on a zero gradient the update is zero, so a step leaves exactly
// W·(1 − lr·wd), the same bits as that product; a matrix without a gradient is not touched.
TEST(Muon, WeightDecayShrinksAMatrixByExactlyTheDecoupledFactorOnAZeroGradient) {
  torch::manual_seed(3);
  auto w = torch::randn({8, 4}).requires_grad_(), idle = torch::randn({4, 4}).requires_grad_();
  const auto w0 = w.detach().clone(), idle0 = idle.detach().clone();
  MuonOptions o;
  o.lr = 0.05;
  o.weight_decay = 0.7;
  Muon muon({{w, 1}, {idle, 1}}, o);
  w.mutable_grad() = torch::zeros({8, 4});
  muon.step();
  EXPECT_TRUE(torch::equal(w.detach(), w0 * (1.0 - 0.05 * 0.7)));
  EXPECT_FALSE(torch::equal(w.detach(), w0));
  EXPECT_TRUE(torch::equal(idle.detach(), idle0));
  // The rate the schedule sets scales the decay with it.
  muon.set_lr(0.01);
  const auto w1 = w.detach().clone();
  muon.step();
  EXPECT_TRUE(torch::equal(w.detach(), w1 * (1.0 - 0.01 * 0.7)));
}

// Many matrices at once go to the thread team, one matrix per thread: each comes out with the
// bits Newton–Schulz gives it alone, and the iteration count is the option's.
TEST(Muon, EveryMatrixIsOrthogonalisedAsItWouldBeAlone) {
  set_cpu_threads(3);  // a team of three, whatever the cores
  torch::manual_seed(4);
  std::vector<torch::Tensor> ws, gs, w0s;
  std::vector<Muon::Matrix> matrices;
  for (int i = 0; i < 9; ++i) {
    const int64_t rows = 16 + 8 * (i % 3), cols = 24;
    ws.push_back(torch::randn({rows, cols}).requires_grad_());
    w0s.push_back(ws.back().detach().clone());
    gs.push_back(torch::randn({rows, cols}));
    matrices.push_back({ws.back(), 1});
  }
  MuonOptions o;
  o.lr = 0.1;
  o.momentum = 0.0;  // U = G
  o.ns_steps = 3;
  Muon muon(matrices, o);
  for (size_t i = 0; i < ws.size(); ++i) ws[i].mutable_grad() = gs[i];
  muon.step();
  for (size_t i = 0; i < ws.size(); ++i) {
    const double rows = static_cast<double>(ws[i].size(0)), scale = std::sqrt(std::max(1.0, rows / 24.0));
    torch::Tensor alone;
    {
      OneBlasThreadPerCaller blas_alone;
      alone = newton_schulz(gs[i].view({1, ws[i].size(0), 24}), 3).reshape(ws[i].sizes());
    }
    EXPECT_TRUE(torch::equal(ws[i].detach(), w0s[i].add(alone, -0.1 * scale))) << i;
    EXPECT_FALSE(torch::allclose(alone, newton_schulz(gs[i], 5), 1e-3, 1e-3)) << i;
  }
}
