// Every setting of dracarys-train, in one struct, with its command line (CLI11) and its JSON
// form (stored in checkpoints so `--resume CKPT` alone continues a run).
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "common/runtime.h"
#include "model/config.h"
#include "train/distributed.h"

namespace dracarys {

struct TrainOptions {
  // data
  std::vector<std::string> corpus;
  double validation_share = 0.1;
  bool no_speakers = false;
  std::string tokenizer_type = "bpe";
  int64_t max_file_mb = 1024;           // corpus files larger than this are refused
  int64_t max_utterance_bytes = 65536;  // so is an utterance longer than this
  bool exact_vocab_size = false;        // set when --vocab-size is given: then a too-small corpus is an error
  // model (vocab_size is the tokenizer's size too)
  ModelConfig model;
  // optimisation
  int64_t batch_size = 16;
  double lr = 2e-3;
  double min_lr = 2e-4;
  int64_t warmup_steps = 100;
  double weight_decay = 0.1;
  double grad_clip = 1.0;
  int64_t max_steps = 0;       // 0 = until the time budget ends
  int64_t schedule_steps = 0;  // 0 = max_steps, or follow the time budget
  double time_budget_s = 0;    // 0 = until max_steps
  // evaluation and output
  int64_t eval_every = 250;
  int64_t eval_windows = 256;
  std::string prompt = "cersei lannister: When you play the game of thrones, you";
  std::string out = "dracarys.pt";
  std::string resume;
  uint64_t seed = 1337;
  RuntimeOptions runtime;
  DistOptions dist;
  bool benchmark = false;
  bool data_only = false;
  int64_t benchmark_windows = 5;

  nlohmann::json to_json() const;  // the training settings a resumed run reuses
  void update_from_json(const nlohmann::json& j);
  void validate() const;  // throws std::invalid_argument
};

constexpr double kMaxDurationSeconds = 366.0 * 24 * 3600;  // a year: the longest time budget

// "90s", "10m", "1h30m", "45" (seconds) -> seconds. Throws std::invalid_argument.
double parse_duration(const std::string& text);

// Registers every option on `app`. Options a user set explicitly are found with app.count().
void add_train_options(CLI::App& app, TrainOptions& o, std::string& time_budget);

// A --config file's keys must be option names: an unknown key (a typo would silently be
// ignored) throws std::invalid_argument naming it and the nearest known key.
void check_config_file_keys(const CLI::App& app);

// Names of flags that change the model's shape (refused with --resume when they differ).
const std::vector<std::string>& model_shape_flags();

}  // namespace dracarys
