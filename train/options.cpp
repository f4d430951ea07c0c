#include "train/options.h"

#include <spdlog/fmt/fmt.h>

#include "cli/option_checks.h"
#include "cli/option_table.h"
#include "data/corpus.h"
#include "data/errors.h"
#include "data/text.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>

namespace dracarys {

namespace {

constexpr double kManySteps = double(int64_t{1} << 40);  // beyond any run, far below overflow

// --positions and --activation: a word on the command line, an enum in the config.
void add_to_app(CLI::App& app, const OptionSpec& spec, PositionalKind& kind) {
  app.add_option_function<std::string>(
         spec.flag, [&kind](const std::string& s) { kind = positional_kind_from_string(s); }, spec.help)
      ->check(CLI::IsMember(spec.choices))
      ->group(spec.group);
}
void add_to_app(CLI::App& app, const OptionSpec& spec, Activation& activation) {
  app.add_option_function<std::string>(
         spec.flag, [&activation](const std::string& s) { activation = activation_from_string(s); }, spec.help)
      ->check(CLI::IsMember(spec.choices))
      ->group(spec.group);
}

// Whether a stored value has the JSON type of the field it is read into: nlohmann's get<>
// would convert a float such as 1e30 into an integer field, which is undefined behaviour.
template <class T>
bool json_fits(const nlohmann::json& v) {
  if constexpr (std::is_same_v<T, bool>)
    return v.is_boolean();
  else if constexpr (std::is_integral_v<T>)
    return v.is_number_integer();
  else if constexpr (std::is_floating_point_v<T>)
    return v.is_number();
  else if constexpr (std::is_same_v<T, std::string>)
    return v.is_string();
  else
    return true;  // lists: get<> checks their elements' types itself
}

// The member a stored setting reads and writes.
template <class T>
T& stored_member(T& member) {
  return member;
}
double& stored_member(Duration d) { return d.seconds; }
bool& stored_member(NegatedFlag f) { return f.value; }

// A member as a user writes it: the model's enums by their words.
template <class T>
nlohmann::json as_written(const T& member) {
  return member;
}
nlohmann::json as_written(PositionalKind kind) { return to_string(kind); }
nlohmann::json as_written(Activation activation) { return to_string(activation); }

// Every option of dracarys-train, once: its flag, group, help, stored key, what --resume does
// with it, and its range. The model's shape is stored as the checkpoint's model config instead.
template <class Visit>
void for_each_option(TrainOptions& o, Visit&& visit) {
  using R = OnResume;
  const char* data = "Data";
  visit(OptionSpec("--corpus", data,
                   "Corpus files or folders: .csv (the show's script or subtitles), .srt, or text with one "
                   "'speaker: line' per line. Several allowed.")
            .stored("corpus"),
        o.corpus);
  visit(OptionSpec("--speakers", data,
                   "Train only on these speakers' lines, comma-separated as the corpus writes them, e.g. "
                   "\"tyrion lannister,cersei lannister\" (a fine-tuning corpus for one character)")
            .stored("speakers")
            .no_default(),
        o.only_speakers);
  visit(OptionSpec("--val-share", data, "Share of utterances held out for validation, split by episode")
            .stored("validation_share")
            .range(0, 0.9),
        o.validation_share);
  visit(
      OptionSpec("--no-speakers", data, "Drop the 'speaker: ' prefix from every line").stored("no_speakers", R::kFixed),
      o.no_speakers);
  visit(OptionSpec("--max-file-mb", data, "Refuse corpus files larger than this many MiB")
            .stored("max_file_mb")
            .range(1, 1 << 20),
        o.max_file_mb);
  visit(OptionSpec("--max-utterance-bytes", data,
                   "Refuse a corpus whose utterance is longer than this (a CSV quote left open makes one huge field)")
            .stored("max_utterance_bytes")
            .range(16, 1 << 30),
        o.max_utterance_bytes);
  visit(OptionSpec("--tokenizer", data, "Tokenizer model: bpe or unigram")
            .stored("tokenizer_type", R::kFixed)
            .one_of({"bpe", "unigram"}),
        o.tokenizer_type);

  const char* model = "Model (fixed once training starts)";
  auto shape = [&](const char* flag, const char* help) { return OptionSpec(flag, model, help).resume(R::kFixed); };
  visit(shape("--layers", "Decoder blocks"), o.model.layers);
  visit(shape("--heads", "Attention heads per block (must divide --d-model)"), o.model.heads);
  visit(shape("--d-model", "Width of the residual stream"), o.model.d_model);
  visit(shape("--d-ff", "Hidden width of the feed-forward block"), o.model.d_ff);
  visit(shape("--context", "Tokens the model sees at once"), o.model.context);
  visit(shape("--vocab-size", "Tokenizer vocabulary (sentencepiece, with byte fallback)"), o.model.vocab_size);
  visit(shape("--dropout", "Dropout on attention weights, residual branches and embeddings"), o.model.dropout);
  visit(shape("--positional,--positions",
              "Positions: rope (rotary: attention turns each head's Q and K by their position; the default), or a "
              "table added to the embeddings, sinusoidal or learned")
            .one_of({"sinusoidal", "learned", "rope"}),
        o.model.positional);
  visit(shape("!--untied-head,--tied-head",
              "Tie the decoder head to the token embedding (one matrix for both) instead of giving it its own "
              "weights (--untied-head, the default)"),
        o.model.tied_head);
  visit(shape("--activation", "Feed-forward non-linearity: gelu (default) or relu2 (max(0,x)^2)")
            .one_of({"gelu", "relu2"}),
        o.model.activation);
  visit(shape("--qk-norm", "Scale each head's queries and keys to unit RMS before their scores (QK-norm)"),
        o.model.qk_norm);
  visit(shape("--logit-softcap", "Soft-cap the logits at this value: cap*tanh(logits/cap) (0 = off)")
            .range(0, kMaxLogitSoftcap),
        o.model.logit_softcap);
  visit(shape("--zero-init",
              "Start attention's output projection and the feed-forward's down projection at zero, so that "
              "every block starts as the identity"),
        o.model.zero_init);

  const char* opt = "Optimisation";
  visit(OptionSpec("--batch-size", opt, "Sequences per step (per micro-batch with --grad-accum)")
            .stored("batch_size")
            .range(1, 1 << 16),
        o.batch_size);
  visit(OptionSpec("--grad-accum", opt,
                   "Micro-batches of --batch-size whose gradients add up to one optimizer step (and one "
                   "all-reduce): a larger batch in the same memory, fewer exchanges over a slow link")
            .stored("grad_accum")
            .range(1, 1024),
        o.grad_accum);
  visit(OptionSpec("--optimizer", opt,
                   "muon (default): Muon (orthogonalised momentum) for the decoder blocks' weight matrices and "
                   "AdamW for the embedding, head, biases and norms; or adamw for everything")
            .stored("optimizer", R::kFixed)
            .one_of({"adamw", "muon"}),
        o.optimizer);
  visit(OptionSpec("--lr", opt, "Peak learning rate of AdamW").stored("lr").above(0, 10), o.lr);
  visit(OptionSpec("--muon-lr", opt, "Peak learning rate of Muon (--optimizer muon); the schedule scales it as --lr")
            .stored("muon_lr")
            .above(0, 10),
        o.muon_lr);
  visit(OptionSpec("--muon-momentum", opt, "Muon's momentum").stored("muon_momentum").range(0, 0.999), o.muon_momentum);
  visit(OptionSpec("--dropout-from-epoch", opt,
                   "Train without dropout until this many passes over the training tokens are done, then at "
                   "--dropout: regularisation for when the data repeats (0 = from the start)")
            .stored("dropout_from_epoch")
            .when_absent_value(0.0)
            .range(0, 1e6),
        o.dropout_from_epoch);
  visit(OptionSpec("--muon-weight-decay", opt,
                   "Decoupled weight decay on Muon's matrices: each step multiplies them by 1 - (Muon's rate "
                   "now) x this, before the step (0 = none)")
            .stored("muon_weight_decay")
            .when_absent_value(0.0)
            .range(0, 100),
        o.muon_weight_decay);
  visit(OptionSpec("--muon-ns-steps", opt, "Newton-Schulz iterations that orthogonalise each Muon update")
            .stored("muon_ns_steps")
            .when_absent_value(5)
            .range(1, 20),
        o.muon_ns_steps);
  visit(OptionSpec("--schedule", opt,
                   "Learning-rate schedule after the warm-up: wsd (default: stable at the peak, then a straight "
                   "decay over the last --cooldown of the run) or cosine (decay from the start)")
            .stored("schedule")
            .one_of({"cosine", "wsd"}),
        o.schedule);
  visit(OptionSpec("--cooldown", opt, "Share of the schedule wsd spends decaying to --min-lr")
            .stored("cooldown")
            .range(0, 1),
        o.cooldown);
  visit(OptionSpec("--min-lr", opt,
                   "Learning rate at the end of the decay (at most --lr; Muon's ends at the same share of --muon-lr)")
            .stored("min_lr")
            .range(0, 10),
        o.min_lr);
  visit(OptionSpec("--warmup", opt,
                   "Share of the schedule spent warming up linearly to --lr, e.g. 0.05; the schedule is measured "
                   "in one unit, steps or the time budget's clock (see --schedule-steps)")
            .stored("warmup")
            .range(0, 0.9),
        o.warmup);
  visit(OptionSpec("--weight-decay", opt, "AdamW weight decay, on weight matrices only")
            .stored("weight_decay")
            .range(0, 100),
        o.weight_decay);
  visit(OptionSpec("--grad-clip", opt, "Clip the gradient norm to this (0 = off)").stored("grad_clip").range(0, 1e6),
        o.grad_clip);
  visit(OptionSpec("--max-steps", opt, "Stop after this many steps (0 = no limit)")
            .stored("max_steps")
            .range(0, kManySteps),
        o.max_steps);
  visit(OptionSpec("--schedule-steps", opt,
                   "Steps the learning-rate schedule (warm-up, then cosine decay to --min-lr) spans (default: "
                   "--max-steps; with only a time budget, warm-up and decay both follow the clock)")
            .stored("schedule_steps")
            .range(0, kManySteps)
            .no_default(),
        o.schedule_steps);
  visit(OptionSpec("--time-budget", opt, "Stop after this long, e.g. 90s, 10m, 1h (default 10m without --max-steps)")
            .stored("time_budget_s")
            .range(0, kMaxDurationSeconds),
        Duration{o.time_budget_s});
  visit(OptionSpec("--seed", opt, "Seed for initial weights, split, batches and dropout").stored("seed"), o.seed);

  const char* io = "Evaluation and output";
  visit(OptionSpec("--out", io, "Checkpoint to write (the best by validation loss goes to NAME.best.pt)"), o.out);
  visit(OptionSpec("--resume", io,
                   "Continue training from this checkpoint, with its model, optimizer and settings; \"auto\": "
                   "from --out where it holds a checkpoint of this same command's run (a restart), else start "
                   "fresh"),
        o.resume);
  visit(OptionSpec("--init-from", io,
                   "Fine-tune: start from this checkpoint's weights, tokenizer and shape, with a fresh optimizer, "
                   "schedule and step count, and the training options given now"),
        o.init_from);
  visit(OptionSpec("--eval-every", io, "Evaluate, print a sample and save every N steps")
            .stored("eval_every")
            .range(1, kManySteps),
        o.eval_every);
  visit(OptionSpec("--save-every", io,
                   "Also save the checkpoint every N steps between evaluations (0 = only at evaluations): what "
                   "a restart after a crash loses at most")
            .stored("save_every")
            .range(0, kManySteps)
            .when_absent_value(0),
        o.save_every);
  visit(OptionSpec("--eval-windows", io, "Validation windows per evaluation (fixed; 0 = all)")
            .stored("eval_windows")
            .range(0, 1 << 30),
        o.eval_windows);
  visit(OptionSpec("--patience", io,
                   "Stop after this many evaluations in a row without a better validation loss (0 = never); the "
                   "best checkpoint stays in NAME.best.pt")
            .stored("patience")
            .range(0, 1 << 30),
        o.patience);
  visit(OptionSpec("--prompt", io, "Prompt of the sample completion shown at each evaluation")
            .stored("prompt")
            .no_default(),
        o.prompt);
  visit(OptionSpec("--probe", io,
                   "A line whose attention filters, every layer and head, each evaluation (and --probe-every) "
                   "records beside the checkpoint in OUT.probe, so you can watch them form (dracarys-serve's page, "
                   "dracarys-infer "
                   "--probe-strip); \"\" records none")
            .stored("probe")
            .no_default(),
        o.probe);
  visit(OptionSpec("--probe-every", io,
                   "The probe also records its filters every N steps between evaluations (0 = at evaluations "
                   "only), so a short run shows them forming step by step; the file keeps at most 128 snapshots, "
                   "dropping every other one as a long run goes on")
            .range(0, kManySteps),
        o.probe_every);

  for_each_runtime_option(o.runtime, visit);
  const char* rt = "Runtime";
  visit(OptionSpec("--benchmark", rt,
                   "Measure training throughput on random tokens (no corpus, no checkpoint) and print one JSON line"),
        o.benchmark);
  visit(OptionSpec("--data-only", rt,
                   "Only prepare the data (read, split, train the tokenizer, tokenise); print the timings as JSON"),
        o.data_only);
  visit(OptionSpec("--benchmark-windows", rt, "Timed windows in --benchmark (the median is reported)").range(1, 1000),
        o.benchmark_windows);

  const char* dist = "Distributed (c10d: TCPStore rendezvous, Gloo all-reduce)";
  visit(OptionSpec("--world-size", dist,
                   "Processes training together (env WORLD_SIZE as torchrun sets it, else Slurm's SLURM_NTASKS); "
                   "1 = no distribution"),
        o.dist.world_size);
  visit(OptionSpec("--rank", dist,
                   "This process's rank, 0..world-size-1 (env RANK, else SLURM_PROCID); rank 0 writes checkpoints"),
        o.dist.rank);
  visit(OptionSpec("--master-addr", dist,
                   "Address of the rendezvous store (env MASTER_ADDR, else the first host of Slurm's node list)"),
        o.dist.master_addr);
  visit(OptionSpec("--master-port", dist,
                   "Port of the rendezvous store (env MASTER_PORT): rank 0's, or torchrun's agent's"),
        o.dist.master_port);
  visit(OptionSpec("--bucket-mb", dist,
                   "Size of the gradient buckets whose all-reduces start during the backward pass, in MB")
            .stored("bucket_mb")
            .range(0.25, 1024)
            .when_absent_value(4.0),
        o.dist.bucket_mb);
  visit(OptionSpec("--dist-timeout", dist,
                   "Seconds a rank waits for the others (to connect, or in an all-reduce) before failing"),
        o.dist.timeout_s);
  visit(OptionSpec("--no-overlap", dist,
                   "Start the gradients' all-reduce after the whole backward pass instead of behind it "
                   "(the same sums; for comparison)"),
        NegatedFlag{o.overlap_allreduce});
  visit(OptionSpec("--dist-interface", dist,
                   "Network interface this rank's all-reduce uses (env GLOO_SOCKET_IFNAME); default: the one "
                   "that routes to --master-addr")
            .no_default(),
        o.dist.interface);
}

}  // namespace

nlohmann::json TrainOptions::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  TrainOptions copy = *this;  // the list hands out writable members; this reads a copy's
  for_each_option(copy, [&j](const OptionSpec& spec, auto member) {
    if (!spec.key.empty()) j[spec.key] = stored_member(member);
  });
  return j;
}

nlohmann::json TrainOptions::values_by_name() const {
  nlohmann::json j = nlohmann::json::object();
  TrainOptions copy = *this;
  for_each_option(
      copy, [&j](const OptionSpec& spec, auto member) { j[spec.long_name()] = as_written(stored_member(member)); });
  return j;
}

nlohmann::json TrainOptions::run_identity() const {
  nlohmann::json j = nlohmann::json::object();
  TrainOptions copy = *this;
  for_each_option(copy, [&j](const OptionSpec& spec, auto member) {
    if (spec.key.empty() && spec.on_resume != OnResume::kFixed) return;  // not stored: per process
    // how the run is carried out, not what it computes: a restart may change them
    if (spec.key == "threads" || spec.key == "intra_op_threads" || spec.key == "save_every") return;
    j[spec.long_name()] = as_written(stored_member(member));
  });
  j["init-from"] = init_from;
  return j;
}

std::string identity_differences(const nlohmann::json& there, const nlohmann::json& here) {
  std::string out;
  auto add = [&out](const std::string& name, const nlohmann::json& a, const nlohmann::json& b) {
    constexpr size_t kShown = 40;  // characters of a value shown
    auto shown = [](const nlohmann::json& v) {
      const std::string s = v.is_null() ? "unset" : v.dump();
      return s.size() > kShown ? s.substr(0, kShown) + "..." : s;
    };
    out += (out.empty() ? "" : "; ") + ("--" + name + " " + shown(a) + " there, " + shown(b) + " here");
  };
  if (!there.is_object()) return "no record of the command that started it";
  for (const auto& [name, value] : here.items())
    if (!there.contains(name) || there.at(name) != value) add(name, there.value(name, nlohmann::json()), value);
  for (const auto& [name, value] : there.items())
    if (!here.contains(name)) add(name, value, nlohmann::json());
  return out;
}

void TrainOptions::update_from_json(const nlohmann::json& j,
                                    const std::function<bool(const std::string&)>& keep_current) {
  if (!j.is_object()) throw std::invalid_argument("the stored training settings are not a JSON object");
  for_each_option(*this, [&](const OptionSpec& spec, auto&& member) {
    if (spec.key.empty() || (!j.contains(spec.key) && spec.when_absent.is_null())) return;
    if (keep_current && keep_current(spec.long_name())) return;
    auto& field = stored_member(member);
    using Field = std::decay_t<decltype(field)>;
    // A checkpoint written before the option existed ran with its value of then.
    const auto& value = j.contains(spec.key) ? j.at(spec.key) : spec.when_absent;
    try {
      if (!json_fits<Field>(value)) throw std::domain_error("wrong type");
      field = value.get<Field>();
    } catch (const std::exception&) {
      throw std::invalid_argument("the stored training setting '" + spec.key + "' has the wrong type");
    }
  });
}

void TrainOptions::validate() const {
  model.validate();
  TrainOptions copy = *this;
  for_each_option(copy, [](const OptionSpec& spec, auto member) { check_range(spec, member); });
  if (min_lr > lr) throw std::invalid_argument(fmt::format("--min-lr ({}) must not be above --lr ({})", min_lr, lr));
  dist.validate();
  if (max_steps == 0 && time_budget_s <= 0 && !benchmark && !data_only)
    throw std::invalid_argument("give --max-steps or --time-budget (or both)");
  for (const auto& [flag, text] : {std::pair{"--prompt", prompt}, std::pair{"--probe", probe}})
    if (text.size() > kMaxSamplePromptBytes)
      throw std::invalid_argument(std::string(flag) + " is " + std::to_string(text.size()) +
                                  " bytes, more than its limit of " + std::to_string(kMaxSamplePromptBytes));
  if (model.vocab_size < 64 && !benchmark)
    throw std::invalid_argument("--vocab-size must be at least 64 for a tokenizer with byte fallback");
}

void add_train_options(CLI::App& app, TrainOptions& o) {
  for_each_option(o, [&app](const OptionSpec& spec, auto&& member) { add_to_app(app, spec, member); });
  app.set_config("--config", "", "Read options from a TOML/INI file whose keys are the long option names");
}

std::vector<std::string> fixed_on_resume() {
  std::vector<std::string> names;
  TrainOptions o;
  for_each_option(o, [&names](const OptionSpec& spec, auto&&) {
    if (spec.on_resume == OnResume::kFixed) names.push_back(spec.long_name());
  });
  return names;
}

}  // namespace dracarys
