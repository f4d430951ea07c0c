#include "train/trainer.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/output_files.h"
#include "data/batching.h"
#include "data/corpus.h"
#include "data/split.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "engine/evaluate.h"
#include "engine/probe.h"
#include "model/generate.h"
#include "train/distributed.h"
#include "train/progress_line.h"
#include "train/step.h"
#include "train/training_data.h"
#include "train/training_state.h"

namespace dracarys {

namespace {

using Clock = std::chrono::steady_clock;
std::atomic<int> g_stop_signal{0};
constexpr int kExitLossNotFinite = 3;  // the loss became NaN or infinite: a distinct code for scripts
// Dropout's seed for a step is seed·kSeedStride + step + kRankStride·rank: distinct for every
// (step, rank) pair of any realistic run, and a function of them alone, so a resumed run
// draws the same masks. Both are primes, far apart.
constexpr uint64_t kSeedStride = 1000003ULL;
constexpr uint64_t kRankStride = 7919ULL;
constexpr int64_t kSampleTokens = 48;  // length of the sample completion at each evaluation
constexpr double kSampleTemperature = 0.8;
constexpr double kProgressEveryTty = 0.25;  // seconds between progress lines on a terminal
constexpr double kProgressEveryLog = 10.0;  // and in a log file

void on_signal(int sig) { g_stop_signal = sig; }

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Ctrl-C and SIGTERM ask the run to stop after the current step (and save) from the moment
// training starts, until run_training returns by any path.
struct StopSignalGuard {
  StopSignalGuard() {
    g_stop_signal = 0;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
  }
  ~StopSignalGuard() {
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
  }
};

std::string best_path(const std::string& out) {
  std::filesystem::path p(out);
  return (p.parent_path() / (p.stem().string() + ".best" + p.extension().string())).string();
}

std::string sample_completion(Transformer& model, const Tokenizer& tok, const std::string& prompt, uint64_t seed) {
  GenerateOptions g;
  g.max_new_tokens = kSampleTokens;
  g.stop_token = tok.eos_id();
  g.sampling.seed = seed;
  g.sampling.temperature = kSampleTemperature;
  auto ids = tok.encode(prompt);
  if (ids.empty()) return "";
  auto out = generate(model, ids, g);
  model->train();
  if (!out.empty() && out.back() == tok.eos_id()) out.pop_back();
  return tok.decode(out);
}

// A rough upper estimate of a training step's memory: weights, gradients and AdamW's two
// moments, plus the activations kept for the backward pass (per layer about a dozen
// [batch, context, d_model]-sized tensors, two of [batch, context, d_ff] and the attention
// weights [batch, heads, context, context] twice), plus the logits and their gradient.
double training_bytes(const TrainOptions& o) {
  const auto& m = o.model;
  const double B = static_cast<double>(o.batch_size), T = static_cast<double>(m.context);
  const double per_layer = B * T * (12.0 * m.d_model + 2.0 * m.d_ff) + 2.0 * B * m.heads * T * T;
  const double activations = m.layers * per_layer + 3.0 * B * T * m.vocab_size;
  return 4.0 * (4.0 * m.parameter_count() + m.buffer_count() + activations);
}

// Refuses, before any data is read, a run whose step cannot fit in this machine's memory: the
// allocation would otherwise fail deep inside LibTorch, or the kernel would kill the process.
void require_memory_for(const TrainOptions& o) {
  const double physical = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  const double needed = training_bytes(o);
  if (physical > 0 && needed > physical)
    throw std::invalid_argument(fmt::format(
        "a training step of this model and batch needs about {:.1f} GB, more than this machine's {:.1f} GB; lower "
        "--batch-size or --context, or the model's size",
        needed / 1e9, physical / 1e9));
}

// One training run, as named steps: prepare (checkpoint, outputs, data, model), then a loop of
// train_one_step / show_progress / evaluate_and_save, then a closing report.
class Trainer {
 public:
  Trainer(TrainOptions o, std::optional<Checkpoint> start, const torch::Device& device)
      : o_(std::move(o)), device_(device), start_(std::move(start)) {}
  int run();

 private:
  void read_starting_checkpoint();
  void check_and_lock_outputs();
  void start_ranks();
  void load_data();
  void prepare_training();
  void build_model();
  double train_one_step();
  void show_progress(double loss);
  void evaluate_and_save(double train_loss, int64_t steps_since_eval);
  void start_probe_record();
  void record_probe_now(double val_loss);
  void write_probe();  // OUT.probe rewritten with the record so far
  void save(const std::string& path);
  void write_best_probe();
  void report_end();

  double elapsed() const { return state_.elapsed_s + seconds_since(start_time_); }
  // Tokens one optimisation step trains on, every rank together.
  int64_t tokens_per_step() const { return o_.batch_size * o_.grad_accum * o_.model.context * dist_->world_size(); }
  double schedule_progress() const { return schedule_position(schedule_, state_.step, elapsed()); }
  // How far the run is towards whichever limit ends it, 0..1 (the progress line's bar).
  double run_fraction() const {
    double f = o_.max_steps > 0 ? static_cast<double>(state_.step) / static_cast<double>(o_.max_steps) : 0.0;
    if (o_.time_budget_s > 0) f = std::max(f, elapsed() / o_.time_budget_s);
    return std::clamp(f, 0.0, 1.0);
  }
  bool resuming() const { return !o_.resume.empty(); }
  // The time budget is spent, Ctrl-C or SIGTERM came, or --patience ran out. A single process
  // stops at once; ranks share the wish through the all-reduce and stop after the same step.
  bool wants_stop() const {
    return (o_.time_budget_s > 0 && elapsed() >= o_.time_budget_s) || g_stop_signal != 0 || patience_ran_out_;
  }

  StopSignalGuard stop_signals_;  // first member: handlers are restored on every way out
  TrainOptions o_;
  Schedule schedule_;  // of o_, once its stored settings are read
  torch::Device device_;
  std::optional<Checkpoint> start_;  // --resume or --init-from, loaded once by main
  std::optional<Tokenizer> start_tokenizer_;
  std::unique_ptr<Distributed> dist_;
  std::optional<OutputLock> lock_;
  std::optional<TrainingData> data_;
  std::optional<TrainBatcher> batcher_;
  std::vector<Batch> validation_;
  std::map<std::string, int64_t> listed_speakers_;  // stored in every checkpoint (dracarys-infer --list-speakers)
  Transformer model_{nullptr};
  std::unique_ptr<Optimizer> optimizer_;
  std::ofstream metrics_;
  std::optional<ProbeRecord> probe_;  // --probe: its filters at evaluations and every --probe-every steps (rank 0 only)

  TrainingState state_;  // the step, the learning rate and the counters a checkpoint saves

  // This process's own bookkeeping.
  Clock::time_point start_time_ = Clock::now();
  bool tty_ = false;
  bool patience_ran_out_ = false, stop_after_this_step_ = false;
  bool metrics_failed_ = false;  // a write to the metrics log failed (reported once)
  double synced_progress_ = 0, tokens_per_s_ = 0;
  Clock::time_point last_log_ = Clock::now(), window_start_ = Clock::now();
  int64_t window_steps_ = 0;
};

// --resume: the saved counters; both --resume and --init-from: the tokenizer and speakers.
void Trainer::read_starting_checkpoint() {
  if (!start_) return;
  const std::string& path = resuming() ? o_.resume : o_.init_from;
  start_tokenizer_ = load_tokenizer(*start_);  // refuses a vocabulary that is not the model's
  listed_speakers_ = checkpoint_speakers(*start_);
  if (resuming()) {
    state_ = TrainingState::from_json(nlohmann::json::parse(start_->meta_json).value("state", nlohmann::json::object()),
                                      path);
    spdlog::info("resuming {} at step {}", path, state_.step);
  } else {
    spdlog::info("fine-tuning from {}: its weights, tokenizer and shape; a fresh optimizer and schedule", path);
  }
}

// The outputs are checked, locked and writable before any time is spent training: only files
// this program wrote are replaced, and one run at a time writes them.
void Trainer::check_and_lock_outputs() {
  if (!dist_->is_main() || o_.data_only) return;
  std::error_code ignored;
  if (!o_.init_from.empty() && std::filesystem::equivalent(o_.init_from, o_.out, ignored))
    throw std::invalid_argument("--out " + o_.out + " is the checkpoint --init-from starts from; choose another --out");
  check_output_path(o_.out, "--out", is_checkpoint_file);
  check_output_path(best_path(o_.out), "--out's best checkpoint", is_checkpoint_file);
  check_output_path(o_.out + ".metrics.jsonl", "--out's metrics log", is_metrics_file);
  if (!o_.probe.empty()) {
    check_output_path(probe_path(o_.out), "--out's probe file", is_probe_file);
    check_output_path(probe_path(best_path(o_.out)), "--out's best probe file", is_probe_file);
  }
  lock_.emplace(o_.out);
  const int stale = remove_stale_temporaries(o_.out) + remove_stale_temporaries(best_path(o_.out)) +
                    remove_stale_temporaries(probe_path(o_.out)) +
                    remove_stale_temporaries(probe_path(best_path(o_.out)));
  if (stale > 0) spdlog::info("removed {} temporary file(s) left by an earlier run that was stopped mid-save", stale);
  // A new file (O_EXCL, an unguessable name) proves the folder writable without following a
  // link someone planted.
  std::string probe = o_.out + ".probe." + std::to_string(::getpid()) + ".XXXXXX";
  const int fd = ::mkostemp(probe.data(), O_CLOEXEC);
  if (fd < 0) throw std::invalid_argument("cannot write to --out " + o_.out + " (is its folder writable?)");
  ::close(fd);
  ::unlink(probe.c_str());
}

// A fresh model from the seed, or the starting checkpoint's weights (and, resuming, its
// optimizer state and counters).
void Trainer::build_model() {
  model_ = fresh_model(o_, device_);
  optimizer_ = std::make_unique<Optimizer>(model_, o_);
  if (start_) {
    load_model_bytes(*model_, start_->model);
    model_->to(device_);
  }
  if (resuming()) optimizer_->load_from(*start_);  // (the counters came with the checkpoint)
  dist_->broadcast_parameters(model_);             // every rank starts from rank 0's weights
  dist_->attach(model_, o_.overlap_allreduce);
  model_->train();
  spdlog::info("model: {} parameters, {}", o_.model.parameter_count(), o_.model.to_json());
}

// One optimisation step on this step's batch. Returns the loss before the update.
double Trainer::train_one_step() {
  // By steps, every rank computes the same position itself. With only a time budget the
  // schedule follows the clock: rank 0's, in a distributed run (from the previous step's
  // all-reduce), so every rank uses the same learning rate.
  const double progress = schedule_progress();
  const bool by_clock = schedule_.steps == 0;
  state_.learning_rate = learning_rate(schedule_, dist_->enabled() && by_clock ? synced_progress_ : progress);
  optimizer_->set_rate_factor(state_.learning_rate / schedule_.peak_lr);
  auto batch = batcher_->batch(state_.step, dist_->rank());
  // Dropout once the data starts to repeat (--dropout-from-epoch): passes made, from the step.
  const double passes = static_cast<double>(state_.step * tokens_per_step()) /
                        static_cast<double>(std::max<size_t>(1, data_->train.ids.size()));
  model_->set_dropout(passes >= o_.dropout_from_epoch ? o_.model.dropout : 0.0);
  // Dropout depends on the step (and rank) only, so resumed runs see the same masks.
  torch::manual_seed(o_.seed * kSeedStride + static_cast<uint64_t>(state_.step) +
                     kRankStride * static_cast<uint64_t>(dist_->rank()));
  StepSignals signals;  // what rides along with the gradients between ranks
  signals.want_stop = wants_stop();
  signals.progress = progress;
  const double loss = train_step(model_, *optimizer_, batch.inputs.to(device_), batch.targets.to(device_), o_.grad_clip,
                                 o_.grad_accum, dist_.get(), &signals);
  synced_progress_ = signals.main_progress;
  if (signals.any_stop) stop_after_this_step_ = true;
  return loss;
}

// The progress line: on a terminal, rewritten in place a few times a second with a bar; in a
// log, every ten seconds. Speed is measured over windows of training steps only (an
// evaluation's time restarts the window).
void Trainer::show_progress(double loss) {
  ++window_steps_;
  const int64_t tokens_per_step = this->tokens_per_step();
  const double window_s = seconds_since(window_start_);
  const double window_rate = static_cast<double>(window_steps_ * tokens_per_step) / std::max(window_s, 1e-9);
  if (window_s >= 2.0) {
    tokens_per_s_ = window_rate;
    window_start_ = Clock::now();
    window_steps_ = 0;
  }
  // A terminal also gets the line at each evaluation and at the last step, so it ends full.
  const bool milestone =
      tty_ && (state_.step % o_.eval_every == 0 || (o_.max_steps > 0 && state_.step >= o_.max_steps));
  if (!milestone && seconds_since(last_log_) < (tty_ ? kProgressEveryTty : kProgressEveryLog)) return;
  Progress p;
  p.step = state_.step;
  p.max_steps = o_.max_steps;
  p.fraction = run_fraction();
  p.elapsed_s = elapsed();
  p.tokens_per_s = tokens_per_s_ > 0 ? tokens_per_s_ : window_rate;  // the first window, until it closes
  double remaining = o_.time_budget_s > 0 ? o_.time_budget_s - p.elapsed_s : INFINITY;
  if (o_.max_steps > 0 && p.tokens_per_s > 0)
    remaining =
        std::min(remaining, static_cast<double>((o_.max_steps - state_.step) * tokens_per_step) / p.tokens_per_s);
  p.remaining_s = std::isfinite(remaining) ? std::max(0.0, remaining) : -1;
  p.loss = loss;
  p.lr = state_.learning_rate;
  if (tty_)
    fmt::print(stderr, "\r\033[K{}", progress_line(p, /*bar=*/true));
  else
    spdlog::info("{}", progress_line(p, /*bar=*/false));
  last_log_ = Clock::now();
}

// Rank 0 evaluates on the validation windows, keeps the best checkpoint, counts evaluations
// without improvement for --patience, prints a sample and saves; the other ranks wait at the
// next all-reduce.
void Trainer::evaluate_and_save(double train_loss, int64_t steps_since_eval) {
  if (!dist_->is_main()) return;
  // The training loss is the mean since the last evaluation, not the last step's (the progress line's).
  std::string line = steps_since_eval > 0
                         ? fmt::format("step {} | train loss {:.4f} (mean of steps {}-{})", state_.step, train_loss,
                                       state_.step - steps_since_eval + 1, state_.step)
                         : fmt::format("step {}", state_.step);
  nlohmann::json m = {{"step", state_.step},
                      {"time_s", elapsed()},
                      {"train_loss", train_loss},
                      {"lr", state_.learning_rate},
                      {"tokens_per_s", tokens_per_s_}};
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  bool best_now = false;
  if (!validation_.empty()) {
    auto r = evaluate(model_, validation_, device_);
    val_loss = r.loss;
    line += fmt::format(" | val loss {:.4f} | ppl {:.2f} | {:.3f} bits/char", r.loss, r.perplexity, r.bits_per_char);
    m["val_loss"] = r.loss;
    m["val_ppl"] = r.perplexity;
    m["val_bpc"] = r.bits_per_char;
    if (r.loss < state_.best_val_loss) {
      state_.best_val_loss = r.loss;
      state_.best_step = state_.step;
      state_.evals_since_best = 0;
      save(best_path(o_.out));
      best_now = true;
      line += " | best so far";
    } else {
      ++state_.evals_since_best;
      patience_ran_out_ = o_.patience > 0 && state_.evals_since_best >= o_.patience;
    }
  }
  if (tty_) fmt::print(stderr, "\r\033[K");
  spdlog::info("{}", line);
  spdlog::info("sample: {}",
               escape_control(o_.prompt + sample_completion(model_, data_->tokenizer, o_.prompt,
                                                            o_.seed + static_cast<uint64_t>(state_.step))));
  metrics_ << m.dump() << "\n" << std::flush;
  if (!metrics_ && !metrics_failed_) {  // the checkpoints matter more: say so once, and go on
    metrics_failed_ = true;
    spdlog::error("cannot write the metrics log {}.metrics.jsonl (disk full?); training goes on without it", o_.out);
  }
  record_probe_now(val_loss);  // before the checkpoint: a resumed run drops what is past its step
  if (best_now) write_best_probe();
  save(o_.out);
}

// The best checkpoint gets the probe's record up to its step beside it too (NAME.best.pt.probe),
// so the page and --probe-strip work on the checkpoint the README points at.
void Trainer::write_best_probe() {
  if (!probe_) return;
  try {
    write_probe_file(probe_path(best_path(o_.out)), *probe_);
  } catch (const std::exception& e) {
    spdlog::error("{}; the best checkpoint goes without its probe file", e.what());
  }
}

// --probe (engine/probe.h): a fresh run records its random filters at step 0; a resumed one
// goes on with the file beside the checkpoint it resumes, from that checkpoint's step.
void Trainer::start_probe_record() {
  if (!dist_->is_main() || o_.probe.empty()) return;
  probe_ = start_probe(model_, data_->tokenizer, o_.probe);
  if (!resuming()) return record_probe_now(std::numeric_limits<double>::quiet_NaN());
  const std::string earlier_path = probe_path(o_.resume);
  if (!std::filesystem::exists(earlier_path)) {
    spdlog::info("no probe file beside {}: the probe's record starts after step {}", o_.resume, state_.step);
    return;
  }
  auto earlier = read_probe_file(earlier_path);
  if (earlier.ids != probe_->ids || earlier.layers != probe_->layers || earlier.heads != probe_->heads)
    throw std::invalid_argument("the probe file " + earlier_path +
                                " records another line or model; move it away, or resume with its --probe");
  drop_after(earlier, state_.step);
  probe_ = std::move(earlier);
}

// The probe's filters at this step, and the file rewritten (a failed write is reported once,
// and training goes on without the probe).
void Trainer::record_probe_now(double val_loss) {
  if (!probe_) return;
  record_probe(*probe_, model_, state_.step, val_loss);
  write_probe();
}

void Trainer::write_probe() {
  if (!probe_) return;
  try {
    write_probe_file(probe_path(o_.out), *probe_);
  } catch (const std::exception& e) {
    spdlog::error("{}; training goes on without the probe", e.what());
    probe_.reset();
  }
}

void Trainer::save(const std::string& path) {
  Checkpoint c;
  c.config = o_.model;
  c.tokenizer = data_->tokenizer.bytes();
  c.model = module_bytes(*model_);
  optimizer_->save_to(c);
  nlohmann::json meta;
  meta["train_options"] = o_.to_json();
  TrainingState saved = state_;
  saved.elapsed_s = elapsed();
  meta["state"] = saved.to_json();
  meta["speakers"] = listed_speakers_;
  if (!o_.started_as.is_null()) meta["run"] = o_.started_as;  // what --resume auto recognises
  c.meta_json = meta.dump();
  save_checkpoint(path, c);
}

void Trainer::report_end() {
  if (dist_->enabled())
    spdlog::info("all-reduce: {:.1f} ms per step ({:.1f} MB per step)",
                 1e3 * dist_->allreduce_seconds() / std::max<int64_t>(1, dist_->allreduce_calls()),
                 dist_->bytes_per_step() / 1e6);
  const std::string best = validation_.empty() ? "" : ", best " + best_path(o_.out);
  if (g_stop_signal) {
    spdlog::warn("stopped by signal {} after step {}; checkpoint saved to {} (continue with --resume {})",
                 static_cast<int>(g_stop_signal), state_.step, o_.out, o_.out);
  } else if (patience_ran_out_) {
    spdlog::info(
        "stopped early after step {}: validation loss did not improve for {} evaluations in a row (--patience); the "
        "best, {:.4f} at step {}, is in {}",
        state_.step, state_.evals_since_best, state_.best_val_loss, state_.best_step, best_path(o_.out));
  } else {
    spdlog::info("done: {} steps in {:.1f}s; checkpoint {}{}", state_.step, elapsed(), o_.out, best);
  }
}

int Trainer::run() {
  // Prepare: the starting checkpoint, the options, the outputs, the data, the model.
  read_starting_checkpoint();
  o_.validate();
  schedule_ = schedule_of(o_);
  require_memory_for(o_);
  if (o_.corpus.empty()) {
    o_.corpus = {default_corpus_path()};
    spdlog::info("no --corpus given: training on the bundled sample corpus {} (a stand-in written for this project)",
                 o_.corpus.front());
  }
  start_ranks();
  check_and_lock_outputs();
  load_data();
  if (o_.data_only) {
    print_data_timings(o_, *data_);
    return 0;
  }
  prepare_training();

  // Train: a step, the progress line, and every --eval-every steps an evaluation and a save.
  while (!stop_after_this_step_) {
    if (o_.max_steps > 0 && state_.step >= o_.max_steps) break;
    if (!dist_->enabled() && wants_stop()) break;
    const double loss = train_one_step();
    if (!std::isfinite(loss)) {
      spdlog::error("loss became {} at step {}; stopped, the last good checkpoint is {}", loss, state_.step, o_.out);
      return kExitLossNotFinite;
    }
    ++state_.step;
    state_.loss_sum += loss;
    ++state_.loss_count;
    show_progress(loss);
    if (state_.step % o_.eval_every == 0) {
      const double average = state_.loss_sum / static_cast<double>(state_.loss_count);
      const int64_t steps = state_.loss_count;
      state_.loss_sum = 0;  // a new window starts before the save, which records it
      state_.loss_count = 0;
      evaluate_and_save(average, steps);
      window_start_ = Clock::now();  // the evaluation's time is not training speed
      window_steps_ = 0;
    } else {
      if (probe_ && o_.probe_every > 0 && state_.step % o_.probe_every == 0)  // kept in memory until a save
        record_probe(*probe_, model_, state_.step, std::numeric_limits<double>::quiet_NaN());
      if (o_.save_every > 0 && state_.step % o_.save_every == 0 && dist_->is_main()) {
        write_probe();
        save(o_.out);  // between evaluations: what a restart after a crash would lose
      }
    }
  }

  // Finish: evaluate and save the last steps, then say why training stopped.
  if (state_.loss_count > 0 || state_.step == 0)
    evaluate_and_save(state_.loss_count > 0 ? state_.loss_sum / static_cast<double>(state_.loss_count) : NAN,
                      state_.loss_count);
  report_end();
  return 0;  // a stop by signal or by --patience saved its checkpoint: that is a success too
}

// Joins the other ranks, when distributed: every rank must train the same model the same way.
void Trainer::start_ranks() {
  dist_ = std::make_unique<Distributed>(o_.dist);
  if (dist_->enabled()) {
    spdlog::info("distributed: rank {} of {} (started by {}), store {}:{}{}", dist_->rank(), dist_->world_size(),
                 o_.dist.launcher, o_.dist.master_addr, o_.dist.master_port,
                 o_.dist.agent_store ? fmt::format(", torchrun's own, attempt {}", o_.dist.restart_count) : "");
    // A restarted group resumes together: every rank from the same step of the same checkpoint.
    dist_->require_same("starting step (every rank needs the same checkpoint: --out in a folder they share)",
                        std::to_string(state_.step));
    // Every rank must train the same model the same way (output path, rank and threads may differ).
    auto same = o_.to_json();
    same.erase("threads");
    same.erase("intra_op_threads");
    same["model"] = nlohmann::json::parse(o_.model.to_json());
    dist_->require_same("config", same.dump());
  }
}

// The corpus, split and tokenised. Rank 0 trains the tokenizer (unless the checkpoint brings
// one); the others use its bytes.
void Trainer::load_data() {
  std::optional<Tokenizer> tokenizer = std::move(start_tokenizer_);
  if (!tokenizer && dist_->enabled() && !dist_->is_main())
    tokenizer = Tokenizer::from_bytes(dist_->share_from_main("tokenizer", ""));
  data_ = prepare_data(o_, std::move(tokenizer));
  if (dist_->enabled() && dist_->is_main() && !start_) dist_->share_from_main("tokenizer", data_->tokenizer.bytes());
}

// The speakers to list, the batches, the model and its optimizer, the metrics log, the clocks.
void Trainer::prepare_training() {
  if (!resuming())  // a fine-tune adds its corpus's speakers to the base model's
    for (const auto& [name, count] : data_->speaker_counts) listed_speakers_[name] += count;
  keep_listable_speakers(listed_speakers_);
  o_.model.vocab_size = data_->tokenizer.vocab_size();
  batcher_.emplace(data_->train.ids, o_.model.context, o_.batch_size * o_.grad_accum, o_.seed);
  validation_ = eval_batches(data_->validation, data_->tokenizer.chars_per_token(), o_.model.context, o_.batch_size,
                             o_.eval_windows);
  build_model();
  start_probe_record();
  if (o_.grad_accum > 1)
    spdlog::info("effective batch: {} sequences x {} micro-batches per rank x {} rank(s) = {}", o_.batch_size,
                 o_.grad_accum, dist_->world_size(), o_.batch_size * o_.grad_accum * dist_->world_size());
  else if (dist_->enabled())
    spdlog::info("effective batch: {} sequences per rank x {} ranks = {}", o_.batch_size, dist_->world_size(),
                 o_.batch_size * dist_->world_size());
  if (dist_->is_main()) {
    metrics_.open(o_.out + ".metrics.jsonl", resuming() ? std::ios::app : std::ios::trunc);
    if (!metrics_) throw std::invalid_argument("cannot write the metrics log " + o_.out + ".metrics.jsonl");
  }
  tty_ = ::isatty(STDERR_FILENO) && dist_->is_main();
  start_time_ = last_log_ = window_start_ = Clock::now();
  synced_progress_ = schedule_progress();
}

}  // namespace

Schedule schedule_of(const TrainOptions& o) {
  Schedule s;
  s.shape = schedule_shape_from_string(o.schedule);
  s.cooldown = o.cooldown;
  s.peak_lr = o.lr;
  s.floor_lr = o.min_lr;
  s.warmup = o.warmup;
  s.steps = o.schedule_steps > 0 ? o.schedule_steps : o.max_steps;
  s.time_budget_s = o.time_budget_s;
  return s;
}

int run_training(TrainOptions opts, std::optional<Checkpoint> start, const torch::Device& device) {
  return Trainer(std::move(opts), std::move(start), device).run();
}

}  // namespace dracarys
