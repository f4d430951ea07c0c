// dracarys-train: trains the transformer on the show's dialogue.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdlib>

#include "common/checkpoint.h"
#include "common/logging.h"
#include "common/runtime.h"
#include "data/errors.h"
#include "train/trainer.h"

using namespace dracarys;

int main(int argc, char** argv) {
  setup_logging();
  CLI::App app{
      "dracarys-train: train a small decoder-only transformer on dialogue.\n"
      "Example: dracarys-train --corpus Game_of_Thrones_Script.csv --out got.pt --time-budget 10m\n"
      "Continue a run: dracarys-train --resume got.pt [--max-steps N]"};
  app.get_formatter()->column_width(34);
  TrainOptions o;
  // torchrun's environment variables are the defaults of the distributed options.
  auto env_int = [](const char* name, int fallback) {
    const char* v = std::getenv(name);
    try {
      return v ? std::stoi(v) : fallback;
    } catch (const std::exception&) {
      return fallback;
    }
  };
  o.dist.world_size = env_int("WORLD_SIZE", 1);
  o.dist.rank = env_int("RANK", 0);
  o.dist.master_port = env_int("MASTER_PORT", 29500);
  if (const char* a = std::getenv("MASTER_ADDR")) o.dist.master_addr = a;
  std::string time_budget;
  add_train_options(app, o, time_budget);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (o.dist.world_size > 1 && o.dist.rank != 0) spdlog::set_level(spdlog::level::warn);  // rank 0 reports
  try {
    check_config_file_keys(app);
    if (!time_budget.empty()) o.time_budget_s = parse_duration(time_budget);
    o.exact_vocab_size = app.count("--vocab-size") > 0;
    if (!o.resume.empty()) {
      // Settings come from the checkpoint; flags given now override training settings, and
      // flags that would change the model's shape are refused.
      auto ckpt = load_checkpoint(o.resume);
      for (const auto& flag : model_shape_flags())
        if (app.count(flag) > 0)
          throw std::invalid_argument(flag + " cannot change when resuming: the model's shape is fixed by " + o.resume);
      TrainOptions from_ckpt = o;
      auto meta = nlohmann::json::parse(ckpt.meta_json);
      from_ckpt.update_from_json(meta.value("train_options", nlohmann::json::object()));
      from_ckpt.model = ckpt.config;
      auto keep = [&](const char* flag, auto& dst, const auto& src) {
        if (app.count(flag) > 0) dst = src;
      };
      keep("--corpus", from_ckpt.corpus, o.corpus);
      keep("--val-share", from_ckpt.validation_share, o.validation_share);
      keep("--batch-size", from_ckpt.batch_size, o.batch_size);
      keep("--lr", from_ckpt.lr, o.lr);
      keep("--min-lr", from_ckpt.min_lr, o.min_lr);
      keep("--warmup-steps", from_ckpt.warmup_steps, o.warmup_steps);
      keep("--weight-decay", from_ckpt.weight_decay, o.weight_decay);
      keep("--grad-clip", from_ckpt.grad_clip, o.grad_clip);
      keep("--max-steps", from_ckpt.max_steps, o.max_steps);
      keep("--schedule-steps", from_ckpt.schedule_steps, o.schedule_steps);
      keep("--time-budget", from_ckpt.time_budget_s, o.time_budget_s);
      keep("--eval-every", from_ckpt.eval_every, o.eval_every);
      keep("--eval-windows", from_ckpt.eval_windows, o.eval_windows);
      keep("--prompt", from_ckpt.prompt, o.prompt);
      keep("--seed", from_ckpt.seed, o.seed);
      if (app.count("--out") == 0)
        from_ckpt.out = o.resume;
      else
        from_ckpt.out = o.out;
      from_ckpt.resume = o.resume;
      // The checkpoint's thread counts, unless given now: BLAS results depend on them, and
      // only the same counts continue the run bit for bit.
      keep("--threads", from_ckpt.runtime.threads, o.runtime.threads);
      keep("--intra-op-threads", from_ckpt.runtime.intra_op_threads, o.runtime.intra_op_threads);
      from_ckpt.runtime.device = o.runtime.device;
      from_ckpt.dist = o.dist;
      o = from_ckpt;
    } else if (o.max_steps == 0 && o.time_budget_s <= 0) {
      o.time_budget_s = 600;  // the default: ten minutes
    }
    check_runtime_options(o.runtime);
    o.runtime.threads = resolved_blas_threads(o.runtime);  // "every core" as a number, for resume
    auto device = apply_runtime(o.runtime);
    spdlog::info("{}", runtime_summary());
    if (o.benchmark) {
      o.validate();
      return run_train_benchmark(o, device);
    }
    return run_training(o, device);
  } catch (const std::exception& e) {
    return report_error(e);
  }
}
