// Every setting of dracarys-train, in one struct, and the one list that describes each of them
// (for_each_option): the command line (CLI11), the JSON form stored in checkpoints so that
// `--resume CKPT` alone continues a run, what a resume may change, and the ranges all come from it.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "cli/config_file.h"
#include "cli/runtime.h"
#include "model/config.h"
#include "train/distributed.h"

namespace dracarys {

constexpr size_t kMaxSamplePromptBytes = 4096;  // --prompt, the evaluation sample's start

// The model dracarys-train builds unless told otherwise: ModelConfig's shape with the model
// choices of the recipe that measured best (docs/learning-speed.md): rotary positions, a decoder
// head of its own, and dropout 0.1 (from the second pass over the data on: --dropout-from-epoch).
inline ModelConfig default_train_model() {
  ModelConfig m;
  m.positional = PositionalKind::Rotary;
  m.tied_head = false;
  m.dropout = 0.1;
  return m;
}

struct TrainOptions {
  // data
  std::vector<std::string> corpus;
  std::string only_speakers;  // --speakers, comma-separated: train only on these speakers' lines (empty = everyone)
  double validation_share = 0.1;
  bool no_speakers = false;
  std::string tokenizer_type = "bpe";
  int64_t max_file_mb = 1024;           // corpus files larger than this are refused
  int64_t max_utterance_bytes = 65536;  // so is an utterance longer than this
  bool exact_vocab_size = false;        // set when --vocab-size is given: then a too-small corpus is an error
  // model (vocab_size is the tokenizer's size too)
  ModelConfig model = default_train_model();
  // optimisation
  int64_t batch_size = 32;
  int64_t grad_accum = 1;          // micro-batches of batch_size per optimizer step
  bool overlap_allreduce = true;   // all-reduce behind the backward pass (distributed)
  std::string optimizer = "muon";  // muon for the blocks' matrices, or adamw alone (train/optimizer.h)
  double lr = 2e-3;                // AdamW's peak rate
  double muon_lr = 0.02;           // Muon's peak rate
  double muon_momentum = 0.95;
  double dropout_from_epoch =
      1;  // dropout (the model's rate) only once this many passes over the training tokens are done
  double muon_weight_decay = 0.1;  // decoupled, on Muon's matrices: W·(1 − lr·wd) each step
  int64_t muon_ns_steps = 5;       // Newton–Schulz iterations per step
  double min_lr = 2e-4;
  std::string schedule = "wsd";  // wsd or cosine (train/schedule.h)
  double cooldown = 0.3;         // wsd: share of the schedule spent decaying
  double warmup = 0.05;          // share of the schedule spent warming up
  double weight_decay = 0.1;
  double grad_clip = 1.0;
  int64_t max_steps = 0;       // 0 = until the time budget ends
  int64_t schedule_steps = 0;  // 0 = max_steps, or follow the time budget
  double time_budget_s = 0;    // 0 = until max_steps
  // evaluation and output
  int64_t eval_every = 100;
  int64_t save_every = 0;  // also save (no evaluation) every N steps; 0 = at evaluations only
  int64_t eval_windows = 256;
  int64_t patience = 0;  // stop after this many evaluations without a better validation loss (0 = never)
  std::string prompt = "cersei lannister: When you play the game of thrones, you";
  // The line whose attention filters training records in OUT.probe (engine/probe.h); "" for none.
  std::string probe = "cersei lannister: When you play the game of thrones, you";
  int64_t probe_every = 10;  // the probe also records every N steps between evaluations (0: at evaluations only)
  std::string out = "dracarys.pt";
  std::string resume;     // continue this checkpoint's run: model, optimizer, settings, step;
                          // "auto": --out's, where it holds this run's checkpoint (see run_identity)
  std::string init_from;  // fine-tune: this checkpoint's weights, tokenizer and shape; a fresh run
  uint64_t seed = 1337;
  RuntimeOptions runtime;
  DistOptions dist;
  // Not an option: the settings of the command that started this run (run_identity() then),
  // stored in every checkpoint and carried over on resume, so that --resume auto knows its own.
  nlohmann::json started_as;
  bool benchmark = false;
  bool data_only = false;
  int64_t benchmark_windows = 5;

  nlohmann::json to_json() const;  // the stored settings (OnResume::kContinues and kFixed)
  // Reads the stored settings in `j`, except those `keep_current(long_name)` says to keep.
  // Throws std::invalid_argument for a value of the wrong type.
  void update_from_json(const nlohmann::json& j, const std::function<bool(const std::string&)>& keep_current = nullptr);
  void validate() const;  // throws std::invalid_argument
  // Every option's value by long name ({"layers": 4, "lr": 0.002, ...}), to compare two sets.
  nlohmann::json values_by_name() const;
  // What makes a run this run: every stored setting and the model's shape by long name, and
  // --init-from; not the thread counts, outputs, --resume or the distributed options (a restart
  // may run at another world size, from another folder).
  nlohmann::json run_identity() const;
};

// The settings where two run identities differ, as "--seed 7 there, 3 here; ..." (empty if none).
std::string identity_differences(const nlohmann::json& there, const nlohmann::json& here);

// The value --resume takes to mean "--out's checkpoint, if it holds one of this run".
constexpr const char* kResumeAuto = "auto";

// Registers every option on `app`. Options a user set explicitly are found with app.count().
void add_train_options(CLI::App& app, TrainOptions& o);

// Long names ("layers", "tokenizer", ...) of the options a resumed run may not change.
std::vector<std::string> fixed_on_resume();

}  // namespace dracarys
