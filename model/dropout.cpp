#include "model/dropout.h"

#include <limits>

#include "model/systems/cpu_threads.h"

namespace dracarys {

namespace {

constexpr int64_t kChunk = 16384;  // elements per piece of the team's work

// A 32-bit integer finaliser (two xor-shift-multiply rounds): every output bit depends on
// every input bit, enough to make a mask look random.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  x ^= x >> 15;
  return x;
}

inline uint32_t element_hash(uint64_t seed, int64_t index) {
  const auto i = static_cast<uint64_t>(index);
  return mix32(mix32(static_cast<uint32_t>(i) ^ static_cast<uint32_t>(seed)) ^
               (static_cast<uint32_t>(seed >> 32) + static_cast<uint32_t>(i >> 32)));
}

// An element is dropped when its hash falls below p·2³².
uint32_t drop_threshold(double p) { return static_cast<uint32_t>(std::min(p * 4294967296.0, 4294967295.0)); }

// out = in·mask/(1 − p), element by element, the team sharing the chunks.
torch::Tensor masked(const torch::Tensor& x, double p, uint64_t seed) {
  auto in = x.contiguous();
  auto out = torch::empty_like(in);
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const int64_t n = in.numel();
  const uint32_t threshold = drop_threshold(p);
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * kChunk, last = std::min(n, end * kChunk); i < last; ++i)
      dst[i] = element_hash(seed, i) >= threshold ? src[i] * scale : 0.0f;
  });
  return out;
}

// The mask is made again for the gradient, from the same seed.
struct HashedDropoutFunction : torch::autograd::Function<HashedDropoutFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, double p, int64_t seed) {
    ctx->saved_data["p"] = p;
    ctx->saved_data["seed"] = seed;
    return masked(x, p, static_cast<uint64_t>(seed));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const double p = ctx->saved_data["p"].toDouble();
    const auto seed = static_cast<uint64_t>(ctx->saved_data["seed"].toInt());
    return {masked(grad[0], p, seed), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool kept_by_dropout(uint64_t seed, int64_t index, double p) { return element_hash(seed, index) >= drop_threshold(p); }

torch::Tensor hashed_dropout(const torch::Tensor& x, double p, uint64_t seed) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat, "hashed_dropout takes float CPU tensors");
  return HashedDropoutFunction::apply(x, p, static_cast<int64_t>(seed));
}

torch::Tensor HashedDropoutImpl::forward(const torch::Tensor& x) {
  if (!is_training() || p_ == 0.0 || x.numel() == 0) return x;
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat) return torch::dropout(x, p_, /*train=*/true);
  // The seed comes from LibTorch's generator, so that torch::manual_seed fixes every mask.
  const int64_t seed = torch::randint(std::numeric_limits<int64_t>::max(), {1}, torch::kLong).item<int64_t>();
  return hashed_dropout(x, p_, static_cast<uint64_t>(seed));
}

}  // namespace dracarys
