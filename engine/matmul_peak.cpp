#include "engine/matmul_peak.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "cli/report.h"

namespace dracarys {

double matmul_flops(int64_t m, int64_t k, int64_t n, const torch::Device& device) {
  using Clock = std::chrono::steady_clock;
  auto a = torch::randn({m, k}, torch::TensorOptions().device(device));
  auto b = torch::randn({k, n}, torch::TensorOptions().device(device));
  auto c = torch::mm(a, b);
  const int reps = std::max<int64_t>(3, static_cast<int64_t>(2e9 / (2.0 * m * k * n)));
  std::vector<double> rates;
  for (int w = 0; w < 5; ++w) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) torch::mm_out(c, a, b);
    if (device.is_cuda()) c.cpu();
    rates.push_back(2.0 * m * k * n * reps / std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return median(rates);
}

}  // namespace dracarys
