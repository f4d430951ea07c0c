// dracarys-train --benchmark: training throughput on random tokens, against the machine's
// measured matrix-multiply peak.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "cli/report.h"
#include "cli/runtime.h"
#include "engine/matmul_peak.h"
#include "model/transformer.h"
#include "train/step.h"
#include "train/trainer.h"

namespace dracarys {

namespace {
using Clock = std::chrono::steady_clock;

// The optimizer's own share of a step: the median time of its update alone, on the gradients
// the last step left (the weights move; the benchmark does not care).
double optimizer_step_seconds(Optimizer& optimizer) {
  std::vector<double> times;
  for (int i = 0; i < 7; ++i) {
    auto t0 = Clock::now();
    optimizer.step();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return median(times);
}

}  // namespace

int run_train_benchmark(const TrainOptions& o, const torch::Device& device) {
  const auto& c = o.model;
  c.validate();
  Transformer model = fresh_model(o, device);
  model->train();
  Distributed dist(o.dist);
  dist.broadcast_parameters(model);
  dist.attach(model, o.overlap_allreduce);
  Optimizer optimizer(model, o);
  auto step = [&] {
    auto batch = torch::randint(0, c.vocab_size, {o.batch_size * o.grad_accum, c.context + 1}, torch::kLong).to(device);
    return train_step(model, optimizer, batch.narrow(1, 0, c.context), batch.narrow(1, 1, c.context), o.grad_clip,
                      o.grad_accum, &dist);
  };
  // Warm-up (excluded): allocator, BLAS pools, first-touch of optimizer state.
  auto t0 = Clock::now();
  for (int i = 0; i < 3; ++i) step();
  const double warm_step_s = std::chrono::duration<double>(Clock::now() - t0).count() / 3;
  const int steps_per_window = std::max(2, static_cast<int>(2.0 / std::max(warm_step_s, 1e-4)));
  std::vector<double> rates;
  const double allreduce_before = dist.allreduce_seconds();
  const int64_t calls_before = dist.allreduce_calls();
  for (int64_t w = 0; w < o.benchmark_windows; ++w) {
    auto ws = Clock::now();
    for (int i = 0; i < steps_per_window; ++i) step();
    rates.push_back(
        static_cast<double>(steps_per_window * o.batch_size * o.grad_accum * c.context * dist.world_size()) /
        std::chrono::duration<double>(Clock::now() - ws).count());
  }
  const double tokens_per_s = median(rates);  // all ranks together
  const double optimizer_s = optimizer_step_seconds(optimizer);
  const int64_t calls = dist.allreduce_calls() - calls_before;
  const double allreduce_ms = calls > 0 ? 1e3 * (dist.allreduce_seconds() - allreduce_before) / calls : 0.0;
  // Model FLOPs per token: 6N for the matrix multiplies of forward + backward, plus 12·L·T·d
  // for attention's score and weighted-sum products (N counts a tied embedding once).
  const double n_params = static_cast<double>(c.parameter_count());
  const double flops_per_token = 6.0 * n_params + 12.0 * c.layers * c.context * c.d_model;
  const double model_flops = tokens_per_s * flops_per_token;
  // The job's peak: every rank measures its own at once, on its own threads, and they add up (two
  // ranks sharing one machine each measure about half of it).
  const double peak_ref = dist.sum_across_ranks(matmul_flops(1024, 1024, 1024, device));
  const int64_t rows = o.batch_size * c.context;
  const double peak_model = dist.sum_across_ranks(matmul_flops(rows, c.d_model, c.d_ff, device));
  const double peak = std::max(peak_ref, peak_model);
  if (!dist.is_main()) return 0;  // rank 0 reports
  nlohmann::json j = {
      {"benchmark", "train"},
      {"device", device.str()},
      {"config", nlohmann::json::parse(c.to_json())},
      {"batch_size", o.batch_size},
      {"parameters", c.parameter_count()},
      {"tokens_per_s", tokens_per_s},
      {"grad_accum", o.grad_accum},
      {"optimizer", o.optimizer},
      {"optimizer_step_s", optimizer_s},
      {"newton_schulz_flops_per_step", optimizer.newton_schulz_flops()},
      {"overlap_allreduce", o.overlap_allreduce},
      {"step_s", static_cast<double>(o.batch_size * o.grad_accum * c.context * dist.world_size()) / tokens_per_s},
      {"model_flops_per_token", flops_per_token},
      {"model_flops_per_s", model_flops},
      {"peak_flops_per_s", peak},
      {"peak_flops_per_s_1024", peak_ref},
      {"peak_flops_per_s_model_shape", peak_model},
      {"mfu", model_flops / peak},
      {"windows", rates.size()},
      {"steps_per_window", steps_per_window},
      {"peak_rss_mb", peak_rss_mb()},
      {"world_size", dist.world_size()},
      {"allreduce_ms_per_step", allreduce_ms},
      {"allreduce_bytes_per_step", dist.bytes_per_step()}};

  spdlog::info(
      "train benchmark: {:.0f} tokens/s, {:.1f} GFLOP/s model, peak {:.1f} GFLOP/s, MFU {:.1f}%; the {} update takes "
      "{:.0f}% of a step",
      tokens_per_s, model_flops / 1e9, peak / 1e9, 100.0 * model_flops / peak, o.optimizer,
      100.0 * optimizer_s * tokens_per_s /
          static_cast<double>(o.batch_size * o.grad_accum * c.context * dist.world_size()));
  fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace dracarys
