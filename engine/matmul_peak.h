// The machine's measured matrix-multiply speed, the yardstick every benchmark divides by.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace dracarys {

// Float32 GEMM FLOP/s of an [m, k] × [k, n] product on `device`: the median of several timed runs.
double matmul_flops(int64_t m, int64_t k, int64_t n, const torch::Device& device);

}  // namespace dracarys
