// Muon: momentum, orthogonalised (Keller Jordan, 2024; the NanoGPT speedrun's optimizer for its
// hidden weight matrices). For each matrix W with gradient G:
//
//   M ← μ·M + G                            momentum
//   U ← G + μ·M                            Nesterov's look-ahead
//   O ← NewtonSchulz(U)                    U with its singular values pushed near 1
//   W ← W·(1 − lr·wd) − lr · √max(1, rows/cols) · O     decoupled weight decay, then the step
//
// An update with every singular value near 1 moves the matrix the same amount in every direction
// it can, however skewed the gradient's spectrum: the rare directions learn as fast as the common.
// Newton–Schulz is matrix products only (five iterations of a quintic), no SVD. On the CPU each
// matrix is orthogonalised whole by one thread of the team (model/systems/cpu_threads.h), its
// products on that thread alone: small products share two cores worse than two matrices do, and a
// matrix's bits then do not depend on the thread count.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace dracarys {

struct MuonOptions {
  double lr = 0.02;         // --muon-lr: the peak rate; the schedule scales it as it scales AdamW's
  double momentum = 0.95;   // --muon-momentum
  double weight_decay = 0;  // --muon-weight-decay: each step shrinks W by the factor 1 − lr·wd
  int64_t ns_steps = 5;     // --muon-ns-steps: Newton–Schulz iterations
};

// X ≈ the orthogonal factor U·Vᵀ of G = U·S·Vᵀ, for G: [rows, cols] or a batch [n, rows, cols].
// Singular values come out in roughly [0.7, 1.2] (the quintic is tuned for speed, not exactness).
torch::Tensor newton_schulz(const torch::Tensor& G, int64_t steps = 5);

class Muon {
 public:
  // One entry per matrix: the parameter, and how many equal row blocks to orthogonalise apart
  // (3 for attention's fused Q, K, V projection: each is its own matrix).
  struct Matrix {
    torch::Tensor param;
    int64_t blocks = 1;
  };
  Muon(std::vector<Matrix> matrices, MuonOptions options);

  void set_lr(double lr) { lr_ = lr; }
  void step();  // uses each parameter's .grad(); a parameter without one is left alone (not decayed)
  const std::vector<Matrix>& matrices() const { return matrices_; }

  // The momentum buffers, as a module of buffers "m0", "m1", ... so that common/checkpoint's
  // checked readers and writers store them.
  torch::nn::Module& state() { return state_; }

 private:
  std::vector<Matrix> matrices_;
  std::vector<torch::Tensor> momentum_;  // M, one per matrix, the parameter's shape
  torch::nn::Module state_;
  // O for each U of `updates` (each [blocks, rows, cols]), in place.
  void orthogonalise(std::vector<torch::Tensor>& updates) const;
  MuonOptions options_;
  double lr_;
};

}  // namespace dracarys
