// dracarys-train: trains the transformer on the show's dialogue.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_format.h"
#include "cli/logging.h"
#include "cli/option_table.h"
#include "cli/runtime.h"
#include "data/errors.h"
#include "train/launch_env.h"
#include "train/trainer.h"

using namespace dracarys;

namespace {

using Given = std::function<bool(const std::string&)>;  // whether an option was given now

// The stored training settings of `ckpt`, for update_from_json.
nlohmann::json stored_settings(const Checkpoint& ckpt) {
  return checkpoint_meta(ckpt).value("train_options", nlohmann::json::object());
}

// The launcher's variables (train/launch_env.h) as the distributed options' defaults, and BLAS
// threads shared out among the ranks on this machine (the command line overrides both).
void use_launch_environment(TrainOptions& o) {
  const LaunchEnvironment env = read_launch_environment([](const char* name) { return std::getenv(name); });
  o.dist.world_size = env.world_size;
  o.dist.rank = env.rank;
  o.dist.master_addr = env.master_addr;
  o.dist.master_port = env.master_port;
  o.dist.agent_store = env.agent_store;
  o.dist.restart_count = env.restart_count;
  o.dist.launcher = env.launcher;
  if (env.local_world_size > 1)
    o.runtime.threads = std::max(1, resolved_blas_threads(RuntimeOptions{}) / env.local_world_size);
}

// "ned stark" of " ned stark , arya stark" (--speakers).
std::string first_listed_speaker(const std::string& list) {
  std::string first = list.substr(0, list.find(','));
  first.erase(0, first.find_first_not_of(' '));
  first.erase(first.find_last_not_of(' ') + 1);
  return first;
}

// --resume auto: continue --out where it exists (refuse_another_run checks it is this run's);
// where it does not, start fresh. A fine-tune's --init-from is then its starting point.
void choose_resume_auto(TrainOptions& o) {
  if (std::filesystem::exists(o.out)) {
    o.resume = o.out;
    o.init_from.clear();  // the run it started is what continues
  } else {
    spdlog::info("--resume auto: {} holds no checkpoint yet, so this run starts fresh", o.out);
    o.resume.clear();
  }
}

void refuse_another_run(const Checkpoint& ckpt, const nlohmann::json& identity, const std::string& out) {
  const std::string differences = identity_differences(checkpoint_meta(ckpt).value("run", nlohmann::json()), identity);
  if (!differences.empty())
    throw std::invalid_argument("--resume auto: " + out + " holds a checkpoint of another run (" + differences +
                                "); give another --out, or continue that run with --resume " + out);
}

// Refuses a fixed option (the model's shape, the tokenizer, the speaker prefix) given now with
// a value other than the checkpoint's. `except`: a fixed option that may change here.
void refuse_contradictions(const TrainOptions& now, const TrainOptions& from_ckpt, const Given& given,
                           const std::string& path, const std::string& except = "") {
  const auto now_values = now.values_by_name(), ckpt_values = from_ckpt.values_by_name();
  for (const auto& name : fixed_on_resume())
    if (given(name) && name != except && now_values.at(name) != ckpt_values.at(name))
      throw std::invalid_argument("--" + name + " " + now_values.at(name).dump() + " contradicts " + path +
                                  ", whose run has " + ckpt_values.at(name).dump() +
                                  " (it cannot change on --resume); leave it out");
}

// --resume: the checkpoint's model and stored settings; options given now win where they may
// change (OnResume::kContinues), and the output defaults to the checkpoint itself.
TrainOptions settings_for_resume(const TrainOptions& now, const Checkpoint& ckpt, const Given& given) {
  TrainOptions o = now;
  o.model = ckpt.config;
  // The stored fixed settings are read even when given now, so that a contradiction shows.
  const auto fixed = fixed_on_resume();
  o.update_from_json(stored_settings(ckpt), [&](const std::string& name) {
    return given(name) && std::find(fixed.begin(), fixed.end(), name) == fixed.end();
  });
  refuse_contradictions(now, o, given, now.resume);
  if (!given("out")) o.out = now.resume;
  return o;
}

// --init-from: the checkpoint's model shape, tokenizer and speaker prefix; every training
// option from the command line (a fresh run). --dropout may change: it is a training choice.
TrainOptions settings_for_fine_tuning(const TrainOptions& now, const Checkpoint& ckpt, const Given& given) {
  TrainOptions o = now;
  o.model = ckpt.config;
  if (given("dropout")) o.model.dropout = now.model.dropout;
  const auto fixed = fixed_on_resume();
  o.update_from_json(stored_settings(ckpt), [&fixed](const std::string& name) {
    return std::find(fixed.begin(), fixed.end(), name) == fixed.end();  // read only the fixed ones
  });
  refuse_contradictions(now, o, given, now.init_from, "dropout");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  use_the_cpus_blas_kernels(argv);
  setup_logging();
  CLI::App app{
      "dracarys-train: train a small decoder-only transformer on dialogue.\n"
      "Example: dracarys-train --corpus Game_of_Thrones_Script.csv --out got.pt --time-budget 10m\n"
      "Continue a run: dracarys-train --resume got.pt [--max-steps N]\n"
      "Fine-tune on one character: dracarys-train --init-from got.pt --corpus Game_of_Thrones_Script.csv "
      "--speakers \"tyrion lannister\" --out tyrion.pt --time-budget 3m --patience 3"};
  app.get_formatter()->column_width(34);
  TrainOptions o;
  add_train_options(app, o);
  try {
    check_config_argument(argc, argv);
    use_launch_environment(o);  // torchrun's or srun's variables are the defaults of the distributed options
  } catch (const std::exception& e) {
    return report_error(e);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return report_parse_error(app, e);
  }
  if (o.dist.world_size > 1 && o.dist.rank != 0) spdlog::set_level(spdlog::level::warn);  // rank 0 reports
  try {
    check_config_file_keys(app);
    o.exact_vocab_size = app.count("--vocab-size") > 0;
    auto given = [&app](const std::string& long_name) { return app.count("--" + long_name) > 0; };
    // Training on some speakers only: the evaluation's sample speaks as the first of them.
    if (given("speakers") && !given("prompt")) o.prompt = first_listed_speaker(o.only_speakers) + ":";
    const nlohmann::json identity = o.run_identity();  // before a checkpoint's settings join in
    const bool resume_auto = o.resume == kResumeAuto;
    if (resume_auto) choose_resume_auto(o);
    std::optional<Checkpoint> start;  // loaded once, here: the trainer takes it from here
    if (!o.resume.empty() && !o.init_from.empty())
      throw std::invalid_argument("give --resume (continue a run) or --init-from (fine-tune from it), not both");
    if (!o.resume.empty()) {
      start = load_checkpoint(o.resume);
      if (resume_auto) refuse_another_run(*start, identity, o.out);
      o = settings_for_resume(o, *start, given);
      o.started_as = checkpoint_meta(*start).value("run", nlohmann::json());
    } else {
      if (!o.init_from.empty()) {
        start = load_checkpoint(o.init_from);
        o = settings_for_fine_tuning(o, *start, given);
      }
      o.started_as = identity;
    }
    if (!given("max-steps") && !given("time-budget") && o.max_steps == 0 && o.time_budget_s <= 0)
      o.time_budget_s = 600;  // the default: ten minutes
    check_runtime_options(o.runtime);
    o.runtime.threads = resolved_blas_threads(o.runtime);  // "every core" as a number, for resume
    auto device = apply_runtime(o.runtime);
    spdlog::info("{}", runtime_summary());
    if (o.benchmark) {
      o.validate();
      return run_train_benchmark(o, device);
    }
    return run_training(o, std::move(start), device);
  } catch (const std::exception& e) {
    return report_error(e);
  }
}
