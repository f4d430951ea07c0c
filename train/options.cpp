#include "train/options.h"

#include "common/option_checks.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace dracarys {

double parse_duration(const std::string& text) {
  if (text.empty()) throw std::invalid_argument("empty duration");
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t used = 0;
    double v;
    try {
      v = std::stod(text.substr(i), &used);
    } catch (const std::exception&) {
      throw std::invalid_argument("bad duration '" + text + "' (use e.g. 90s, 10m, 1h30m)");
    }
    if (std::isnan(v)) throw std::invalid_argument("bad duration '" + text + "' (use e.g. 90s, 10m, 1h30m)");
    i += used;
    double unit = 1;
    if (i < text.size()) {
      switch (std::tolower(static_cast<unsigned char>(text[i]))) {
        case 's':
          unit = 1;
          break;
        case 'm':
          unit = 60;
          break;
        case 'h':
          unit = 3600;
          break;
        default:
          throw std::invalid_argument("bad duration '" + text + "' (use e.g. 90s, 10m, 1h30m)");
      }
      ++i;
    }
    if (!(v >= 0)) throw std::invalid_argument("duration must not be negative: '" + text + "'");
    total += v * unit;
  }
  if (!(total <= kMaxDurationSeconds))
    throw std::invalid_argument("duration '" + text + "' is longer than a year (" +
                                std::to_string(static_cast<int64_t>(kMaxDurationSeconds)) + " s)");
  return total;
}

nlohmann::json TrainOptions::to_json() const {
  return {{"corpus", corpus},
          {"validation_share", validation_share},
          {"no_speakers", no_speakers},
          {"tokenizer_type", tokenizer_type},
          {"batch_size", batch_size},
          {"lr", lr},
          {"min_lr", min_lr},
          {"warmup_steps", warmup_steps},
          {"weight_decay", weight_decay},
          {"grad_clip", grad_clip},
          {"max_steps", max_steps},
          {"schedule_steps", schedule_steps},
          {"time_budget_s", time_budget_s},
          {"eval_every", eval_every},
          {"eval_windows", eval_windows},
          {"prompt", prompt},
          {"seed", seed},
          {"max_file_mb", max_file_mb},
          {"max_utterance_bytes", max_utterance_bytes},
          // Thread counts change the rounding of BLAS products, so a resumed run keeps them.
          {"threads", runtime.threads},
          {"intra_op_threads", runtime.intra_op_threads}};
}

void TrainOptions::update_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("the stored training settings are not a JSON object");
  auto get = [&](const char* k, auto& field) {
    if (!j.contains(k)) return;
    try {
      field = j.at(k).get<std::decay_t<decltype(field)>>();
    } catch (const nlohmann::json::exception&) {
      throw std::invalid_argument(std::string("the stored training setting '") + k + "' has the wrong type");
    }
  };
  get("corpus", corpus);
  get("validation_share", validation_share);
  get("no_speakers", no_speakers);
  get("tokenizer_type", tokenizer_type);
  get("batch_size", batch_size);
  get("lr", lr);
  get("min_lr", min_lr);
  get("warmup_steps", warmup_steps);
  get("weight_decay", weight_decay);
  get("grad_clip", grad_clip);
  get("max_steps", max_steps);
  get("schedule_steps", schedule_steps);
  get("time_budget_s", time_budget_s);
  get("eval_every", eval_every);
  get("eval_windows", eval_windows);
  get("prompt", prompt);
  get("seed", seed);
  get("max_file_mb", max_file_mb);
  get("max_utterance_bytes", max_utterance_bytes);
  get("threads", runtime.threads);
  get("intra_op_threads", runtime.intra_op_threads);
}

void TrainOptions::validate() const {
  model.validate();
  constexpr int64_t kManySteps = int64_t{1} << 40;  // beyond any run, far below overflow
  require_number("--val-share", validation_share, 0.0, 0.9);
  require_count("--batch-size", batch_size, 1, 1 << 16);
  require_number("--lr", lr, 0.0, 10.0, /*above_lo=*/true);
  require_number("--min-lr", min_lr, 0.0, lr);
  require_count("--warmup-steps", warmup_steps, 0, kManySteps);
  require_number("--weight-decay", weight_decay, 0.0, 100.0);
  require_number("--grad-clip", grad_clip, 0.0, 1e6);
  require_count("--max-steps", max_steps, 0, kManySteps);
  require_count("--schedule-steps", schedule_steps, 0, kManySteps);
  require_number("--time-budget (seconds)", time_budget_s, 0.0, kMaxDurationSeconds);
  require_count("--eval-every", eval_every, 1, kManySteps);
  require_count("--eval-windows", eval_windows, 0, 1 << 30);
  require_count("--benchmark-windows", benchmark_windows, 1, 1000);
  require_count("--max-file-mb", max_file_mb, 1, 1 << 20);
  require_count("--max-utterance-bytes", max_utterance_bytes, 16, 1 << 30);
  check_runtime_options(runtime);
  dist.validate();
  if (max_steps == 0 && time_budget_s <= 0 && !benchmark && !data_only)
    throw std::invalid_argument("give --max-steps or --time-budget (or both)");
  if (model.vocab_size < 64 && !benchmark)
    throw std::invalid_argument("--vocab-size must be at least 64 for a tokenizer with byte fallback");
}

void add_train_options(CLI::App& app, TrainOptions& o, std::string& time_budget) {
  auto* data = "Data";
  app.add_option("--corpus", o.corpus,
                 "Corpus files or folders: .csv (the show's script or subtitles), .srt, or text with one "
                 "'speaker: line' per line. Several allowed.")
      ->group(data);
  app.add_option("--val-share", o.validation_share, "Share of utterances held out for validation, split by episode")
      ->capture_default_str()
      ->group(data);
  app.add_flag("--no-speakers", o.no_speakers, "Drop the 'speaker: ' prefix from every line")->group(data);
  app.add_option("--max-file-mb", o.max_file_mb, "Refuse corpus files larger than this many MiB")
      ->capture_default_str()
      ->group(data);
  app.add_option("--max-utterance-bytes", o.max_utterance_bytes,
                 "Refuse a corpus whose utterance is longer than this (a CSV quote left open makes one huge field)")
      ->capture_default_str()
      ->group(data);
  app.add_option("--tokenizer", o.tokenizer_type, "Tokenizer model: bpe or unigram")
      ->check(CLI::IsMember({"bpe", "unigram"}))
      ->capture_default_str()
      ->group(data);

  auto* model = "Model (fixed once training starts)";
  app.add_option("--layers", o.model.layers, "Decoder blocks")->capture_default_str()->group(model);
  app.add_option("--heads", o.model.heads, "Attention heads per block (must divide --d-model)")
      ->capture_default_str()
      ->group(model);
  app.add_option("--d-model", o.model.d_model, "Width of the residual stream")->capture_default_str()->group(model);
  app.add_option("--d-ff", o.model.d_ff, "Hidden width of the feed-forward block")->capture_default_str()->group(model);
  app.add_option("--context", o.model.context, "Tokens the model sees at once")->capture_default_str()->group(model);
  app.add_option("--vocab-size", o.model.vocab_size, "Tokenizer vocabulary (sentencepiece, with byte fallback)")
      ->capture_default_str()
      ->group(model);
  app.add_option("--dropout", o.model.dropout, "Dropout on attention weights, residual branches and embeddings")
      ->capture_default_str()
      ->group(model);
  app.add_option_function<std::string>(
         "--positional", [&o](const std::string& s) { o.model.positional = positional_kind_from_string(s); },
         "Positional encoding: sinusoidal (default) or learned")
      ->check(CLI::IsMember({"sinusoidal", "learned"}))
      ->group(model);
  app.add_flag_function(
         "--untied-head", [&o](int64_t) { o.model.tied_head = false; },
         "Give the decoder head its own weights instead of reusing the embedding")
      ->group(model);

  auto* opt = "Optimisation";
  app.add_option("--batch-size", o.batch_size, "Sequences per step")->capture_default_str()->group(opt);
  app.add_option("--lr", o.lr, "Peak learning rate (AdamW)")->capture_default_str()->group(opt);
  app.add_option("--min-lr", o.min_lr, "Learning rate at the end of the cosine decay")
      ->capture_default_str()
      ->group(opt);
  app.add_option("--warmup-steps", o.warmup_steps, "Steps of linear warm-up")->capture_default_str()->group(opt);
  app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay, on weight matrices only")
      ->capture_default_str()
      ->group(opt);
  app.add_option("--grad-clip", o.grad_clip, "Clip the gradient norm to this (0 = off)")
      ->capture_default_str()
      ->group(opt);
  app.add_option("--max-steps", o.max_steps, "Stop after this many steps (0 = no limit)")
      ->capture_default_str()
      ->group(opt);
  app.add_option("--schedule-steps", o.schedule_steps,
                 "Steps the learning-rate schedule spans (default: --max-steps; with only a time budget, the schedule "
                 "follows the clock)")
      ->group(opt);
  app.add_option("--time-budget", time_budget,
                 "Stop after this long, e.g. 90s, 10m, 1h (default 10m without --max-steps)")
      ->group(opt);
  app.add_option("--seed", o.seed, "Seed for initial weights, split, batches and dropout")
      ->capture_default_str()
      ->group(opt);

  auto* io = "Evaluation and output";
  app.add_option("--out", o.out, "Checkpoint to write (the best by validation loss goes to NAME.best.pt)")
      ->capture_default_str()
      ->group(io);
  app.add_option("--resume", o.resume, "Continue training from this checkpoint, with its model and settings")
      ->group(io);
  app.add_option("--eval-every", o.eval_every, "Evaluate, print a sample and save every N steps")
      ->capture_default_str()
      ->group(io);
  app.add_option("--eval-windows", o.eval_windows, "Validation windows per evaluation (fixed; 0 = all)")
      ->capture_default_str()
      ->group(io);
  app.add_option("--prompt", o.prompt, "Prompt of the sample completion shown at each evaluation")->group(io);

  auto* rt = "Runtime";
  add_runtime_options(app, o.runtime);
  app.add_flag("--benchmark", o.benchmark,
               "Measure training throughput on random tokens (no corpus, no checkpoint) and print one JSON line")
      ->group(rt);
  app.add_flag("--data-only", o.data_only,
               "Only prepare the data (read, split, train the tokenizer, tokenise); print the timings as JSON")
      ->group(rt);
  app.add_option("--benchmark-windows", o.benchmark_windows, "Timed windows in --benchmark (the median is reported)")
      ->capture_default_str()
      ->group(rt);
  auto* dist = "Distributed (c10d: TCPStore rendezvous, Gloo all-reduce)";
  app.add_option("--world-size", o.dist.world_size, "Processes training together (env WORLD_SIZE); 1 = no distribution")
      ->capture_default_str()
      ->group(dist);
  app.add_option("--rank", o.dist.rank, "This process's rank, 0..world-size-1 (env RANK); rank 0 writes checkpoints")
      ->capture_default_str()
      ->group(dist);
  app.add_option("--master-addr", o.dist.master_addr, "Address of rank 0's rendezvous store (env MASTER_ADDR)")
      ->capture_default_str()
      ->group(dist);
  app.add_option("--master-port", o.dist.master_port, "Port of rank 0's rendezvous store (env MASTER_PORT)")
      ->capture_default_str()
      ->group(dist);
  app.add_option("--dist-timeout", o.dist.timeout_s,
                 "Seconds a rank waits for the others (to connect, or in an all-reduce) before failing")
      ->capture_default_str()
      ->group(dist);
  app.set_config("--config", "", "Read options from a TOML/INI file whose keys are the long option names");
}

namespace {

// Edits (insertions, deletions, substitutions) that turn `a` into `b`.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace

void check_config_file_keys(const CLI::App& app) {
  const auto* config = app.get_config_ptr();
  if (!config || config->count() == 0) return;
  const std::string path = config->as<std::string>();
  std::vector<std::string> known;
  for (const auto* opt : app.get_options())
    for (const auto& name : opt->get_lnames()) known.push_back(name);
  std::vector<CLI::ConfigItem> items;
  try {
    items = app.get_config_formatter()->from_file(path);
  } catch (const std::exception&) {
    throw std::invalid_argument("--config " + path + " cannot be read as a TOML/INI file");
  }
  for (const auto& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // section markers
    const std::string& key = item.name;  // CLI11 matches the long name exactly: batch_size is not batch-size
    if (!item.parents.empty() && !(item.parents.size() == 1 && item.parents[0] == "default"))
      throw std::invalid_argument("--config " + path + ": key '" + item.fullname() +
                                  "' is inside a section; write every key at the top level");
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string nearest;
    size_t best = SIZE_MAX;
    for (const auto& k : known)
      if (edit_distance(key, k) < best) best = edit_distance(key, k), nearest = k;
    throw std::invalid_argument("--config " + path + ": unknown key '" + item.name + "'" +
                                (best <= 3 ? "; did you mean '" + nearest + "'?" : "; keys are the long option names"));
  }
}

const std::vector<std::string>& model_shape_flags() {
  static const std::vector<std::string> flags = {"--layers",  "--heads",      "--d-model",    "--d-ff",
                                                 "--context", "--vocab-size", "--positional", "--untied-head",
                                                 "--dropout", "--tokenizer",  "--no-speakers"};
  return flags;
}

}  // namespace dracarys
