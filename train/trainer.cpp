#include "train/trainer.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "common/checkpoint.h"
#include "common/evaluate.h"
#include "common/output_files.h"
#include "data/batching.h"
#include "data/corpus.h"
#include "data/split.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "model/generate.h"
#include "train/distributed.h"
#include "train/step.h"

namespace dracarys {

namespace {

using Clock = std::chrono::steady_clock;
std::atomic<int> g_stop_signal{0};
constexpr int64_t kMaxStoredSteps = int64_t{1} << 40;  // far beyond any run; refuses nonsense
constexpr int kExitLossNotFinite = 3;                  // the loss became NaN or infinite: a distinct code for scripts
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

// The training data, ready for batching: the tokenizer, both token streams, and how long
// each stage of getting there took.
struct TrainingData {
  Tokenizer tokenizer;
  TokenStream train, validation;
  double read_s = 0, tokenizer_train_s = 0, tokenize_s = 0;
  size_t utterances = 0;
};

// `given`: the tokenizer to use (a resumed run's, or rank 0's); without it one is trained.
TrainingData prepare_data(const TrainOptions& o, std::optional<Tokenizer> given) {
  auto t0 = Clock::now();
  CorpusOptions corpus_options;
  corpus_options.speakers = !o.no_speakers;
  corpus_options.max_file_bytes = static_cast<uint64_t>(o.max_file_mb) << 20;
  corpus_options.max_utterance_bytes = static_cast<uint64_t>(o.max_utterance_bytes);
  auto corpus = load_corpus(o.corpus, corpus_options);
  spdlog::info("corpus: {}", corpus.stats.summary());
  auto split = split_by_episode(corpus.utterances, o.validation_share, o.seed);
  std::vector<std::string> train_lines, val_lines;
  for (auto& u : split.train) train_lines.push_back(u.line(corpus_options.speakers));
  for (auto& u : split.validation) val_lines.push_back(u.line(corpus_options.speakers));
  spdlog::info("split by episode: {} training and {} validation utterances ({} validation episodes)",
               train_lines.size(), val_lines.size(), split.validation_episodes.size());
  auto t1 = Clock::now();
  const bool trained = !given;
  std::optional<Tokenizer> tok = std::move(given);
  if (trained) {
    TokenizerOptions to;
    to.model_type = o.tokenizer_type;
    to.vocab_size = static_cast<int>(o.model.vocab_size);
    to.exact_vocab_size = o.exact_vocab_size;
    tok = Tokenizer::train(train_lines, to);
    spdlog::info("tokenizer: {} with {} tokens trained in {:.2f}s", o.tokenizer_type, tok->vocab_size(),
                 std::chrono::duration<double>(Clock::now() - t1).count());
  }
  auto t2 = Clock::now();
  TrainingData p{*tok, tokenize_lines(*tok, train_lines), tokenize_lines(*tok, val_lines)};
  const double secs = std::chrono::duration<double>(Clock::now() - t2).count();
  p.read_s = std::chrono::duration<double>(t1 - t0).count();
  p.tokenizer_train_s = !trained ? 0.0 : std::chrono::duration<double>(t2 - t1).count();
  p.tokenize_s = secs;
  p.utterances = corpus.utterances.size();
  spdlog::info(
      "tokenised {} + {} tokens ({:.2f} characters per token) in {:.2f}s ({:.0f} chars/s); data ready in {:.2f}s",
      p.train.ids.size(), p.validation.ids.size(), p.train.chars / std::max<size_t>(1, p.train.ids.size()), secs,
      (p.train.chars + p.validation.chars) / std::max(secs, 1e-9),
      std::chrono::duration<double>(Clock::now() - t0).count());
  return p;
}

std::string sample_completion(Transformer& model, const Tokenizer& tok, const std::string& prompt, uint64_t seed) {
  GenerateOptions g;
  g.max_new_tokens = kSampleTokens;
  g.stop_token = tok.eos_id();
  g.sampling.seed = seed;
  g.sampling.temperature = kSampleTemperature;
  auto ids = tok.encode(prompt);
  if (ids.empty()) return "";
  auto out = generate(model, std::vector<int64_t>(ids.begin(), ids.end()), g);
  model->train();
  std::vector<int32_t> o32(out.begin(), out.end());
  if (!o32.empty() && o32.back() == tok.eos_id()) o32.pop_back();
  return tok.decode(o32);
}

// The training state a checkpoint carries. It comes from a file, so every field is checked: a
// negative step, say, would train with a negative learning rate.
nlohmann::json checked_state(const Checkpoint& ckpt, const std::string& path) {
  auto meta = nlohmann::json::parse(ckpt.meta_json);
  nlohmann::json state = meta.value("state", nlohmann::json::object());
  auto bad = [&](const std::string& what) { return CheckpointError(path + ": checkpoint's training state " + what); };
  if (!state.is_object()) throw bad("is not a JSON object");
  auto count = [&](const char* key) {
    if (!state.contains(key)) return;
    const auto& v = state[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxStoredSteps)
      throw bad(std::string("has '") + key + "' that is not a whole number in 0.." + std::to_string(kMaxStoredSteps));
  };
  auto finite = [&](const char* key, bool non_negative) {
    if (!state.contains(key)) return;
    const auto& v = state[key];
    if (!v.is_number() || !std::isfinite(v.get<double>()) || (non_negative && v.get<double>() < 0))
      throw bad(std::string("has '") + key + "' that is not a finite" + (non_negative ? " non-negative" : "") +
                " number");
  };
  count("step");
  count("loss_count");
  finite("elapsed_s", true);
  finite("best_val_loss", false);
  finite("loss_sum", false);
  return state;
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

}  // namespace

double learning_rate(const TrainOptions& o, int64_t step, double progress) {
  if (step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps + 1);
  progress = std::clamp(progress, 0.0, 1.0);
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + std::cos(M_PI * progress));
}

int run_training(TrainOptions o, const torch::Device& device) {
  StopSignalGuard signals_stop_training;
  // Resume: model, tokenizer, settings and state come from the checkpoint.
  std::optional<Checkpoint> resumed;
  std::optional<Tokenizer> resumed_tokenizer;
  nlohmann::json state = nlohmann::json::object();
  if (!o.resume.empty()) {
    resumed = load_checkpoint(o.resume);
    resumed_tokenizer = load_tokenizer(*resumed);  // refuses a vocabulary that is not the model's
    o.model = resumed->config;
    state = checked_state(*resumed, o.resume);
    spdlog::info("resuming {} at step {}", o.resume, state.value("step", 0));
  }
  o.validate();
  require_memory_for(o);
  if (o.corpus.empty()) {
    o.corpus = {default_corpus_path()};
    spdlog::info("no --corpus given: training on the embedded sample corpus {} (a stand-in written for this project)",
                 o.corpus.front());
  }

  std::error_code ignored;
  Distributed dist(o.dist);
  if (!dist.is_main()) spdlog::set_level(spdlog::level::warn);  // only rank 0 reports progress
  if (dist.enabled())
    spdlog::info("distributed: rank {} of {}, store {}:{}", dist.rank(), dist.world_size(), o.dist.master_addr,
                 o.dist.master_port);
  {
    // Every rank must train the same model the same way (output path and rank may differ).
    auto same = o.to_json();
    same.erase("threads");  // thread counts are each machine's own
    same.erase("intra_op_threads");
    same["model"] = nlohmann::json::parse(o.model.to_json());
    dist.require_same("config", same.dump());
  }

  // The outputs are checked, locked and writable before any time is spent training: only
  // files this program wrote are replaced, and one run at a time writes them.
  std::optional<OutputLock> lock;
  if (dist.is_main() && !o.data_only) {
    check_output_path(o.out, "--out", is_checkpoint_file);
    check_output_path(best_path(o.out), "--out's best checkpoint", is_checkpoint_file);
    check_output_path(o.out + ".metrics.jsonl", "--out's metrics log", is_metrics_file);
    lock.emplace(o.out);
    const int stale = remove_stale_temporaries(o.out) + remove_stale_temporaries(best_path(o.out));
    if (stale > 0) spdlog::info("removed {} temporary file(s) left by an earlier run that was stopped mid-save", stale);
    const auto probe = o.out + ".probe." + std::to_string(::getpid());
    std::ofstream f(probe);
    if (!f) throw std::invalid_argument("cannot write to --out " + o.out + " (is its folder writable?)");
    f.close();
    std::filesystem::remove(probe, ignored);
  }

  // Rank 0 trains the tokenizer; the other ranks use exactly its bytes.
  std::optional<Tokenizer> tokenizer = std::move(resumed_tokenizer);
  if (!tokenizer && dist.enabled() && !dist.is_main())
    tokenizer = Tokenizer::from_bytes(dist.share_from_main("tokenizer", ""));
  auto data = prepare_data(o, std::move(tokenizer));
  if (dist.enabled() && dist.is_main() && !resumed) dist.share_from_main("tokenizer", data.tokenizer.bytes());
  if (o.data_only) {  // --data-only: report how long data preparation took, train nothing
    const double chars = data.train.chars + data.validation.chars;
    const double tokens = static_cast<double>(data.train.ids.size() + data.validation.ids.size());
    nlohmann::json j = {{"benchmark", "data"},
                        {"corpus", o.corpus},
                        {"utterances", data.utterances},
                        {"characters", chars},
                        {"tokens", tokens},
                        {"read_s", data.read_s},
                        {"tokenizer_train_s", data.tokenizer_train_s},
                        {"tokenize_s", data.tokenize_s},
                        {"tokenize_chars_per_s", chars / std::max(data.tokenize_s, 1e-9)},
                        {"tokenize_tokens_per_s", tokens / std::max(data.tokenize_s, 1e-9)}};
    fmt::print("{}\n", j.dump());
    return 0;
  }
  o.model.vocab_size = data.tokenizer.vocab_size();
  TrainBatcher batcher(data.train.ids, o.model.context, o.batch_size, o.seed);
  auto val =
      eval_batches(data.validation, data.tokenizer.chars_per_token(), o.model.context, o.batch_size, o.eval_windows);

  torch::manual_seed(o.seed);
  Transformer model(o.model);
  model->to(device);
  auto optimizer = make_optimizer(model, o);
  int64_t step = 0;
  double elapsed_before = 0, best_val = INFINITY;
  // Training loss summed since the last evaluation: saved too, so a resumed run logs the same
  // averages as an uninterrupted one.
  double loss_sum = 0;
  int64_t loss_n = 0;
  if (resumed) {
    load_module_bytes(*model, resumed->model);
    model->to(device);
    if (!resumed->optimizer.empty()) {
      load_optimizer_bytes(optimizer, resumed->optimizer);
      check_optimizer_state(optimizer);
    }
    step = state.value("step", int64_t{0});
    elapsed_before = state.value("elapsed_s", 0.0);
    best_val = state.value("best_val_loss", INFINITY);
    loss_sum = state.value("loss_sum", 0.0);
    loss_n = state.value("loss_count", int64_t{0});
  }
  dist.broadcast_parameters(model);  // every rank starts from rank 0's weights
  model->train();
  spdlog::info("model: {} parameters, {}", o.model.parameter_count(), o.model.to_json());
  if (dist.enabled())
    spdlog::info("effective batch: {} sequences per rank x {} ranks = {}", o.batch_size, dist.world_size(),
                 o.batch_size * dist.world_size());

  const int64_t tokens_per_step = o.batch_size * o.model.context * dist.world_size();
  const int64_t schedule_steps = o.schedule_steps > 0 ? o.schedule_steps : o.max_steps;
  auto progress_of = [&](int64_t s, double elapsed) {
    if (schedule_steps > 0) return static_cast<double>(s) / static_cast<double>(schedule_steps);
    return elapsed / o.time_budget_s;  // only a time budget: the schedule follows the clock
  };

  const auto start = Clock::now();
  auto elapsed = [&] { return elapsed_before + std::chrono::duration<double>(Clock::now() - start).count(); };
  auto save = [&](const std::string& path) {
    Checkpoint c;
    c.config = o.model;
    c.tokenizer = data.tokenizer.bytes();
    c.model = module_bytes(*model);
    c.optimizer = optimizer_bytes(optimizer);
    nlohmann::json meta;
    meta["train_options"] = o.to_json();
    meta["state"] = {{"step", step},
                     {"elapsed_s", elapsed()},
                     {"best_val_loss", std::isfinite(best_val) ? best_val : 1e30},
                     {"loss_sum", loss_sum},
                     {"loss_count", loss_n}};
    c.meta_json = meta.dump();
    save_checkpoint(path, c);
  };

  std::ofstream metrics;
  if (dist.is_main()) metrics.open(o.out + ".metrics.jsonl", resumed ? std::ios::app : std::ios::trunc);
  const bool tty = ::isatty(STDERR_FILENO) && dist.is_main();
  auto last_log = Clock::now();
  auto window_start = Clock::now();
  int64_t window_steps = 0;
  double tokens_per_s = 0;

  auto finish_eval = [&](double train_loss) {
    if (!dist.is_main()) return;  // rank 0 evaluates, samples and writes; the others wait at the next all-reduce
    std::string line = fmt::format("step {} | train loss {:.4f}", step, train_loss);
    nlohmann::json m = {{"step", step},
                        {"time_s", elapsed()},
                        {"train_loss", train_loss},
                        {"lr", learning_rate(o, step, progress_of(step, elapsed()))},
                        {"tokens_per_s", tokens_per_s}};
    if (!val.empty()) {
      auto r = evaluate(model, val, device);
      line += fmt::format(" | val loss {:.4f} | ppl {:.2f} | {:.3f} bits/char", r.loss, r.perplexity, r.bits_per_char);
      m["val_loss"] = r.loss;
      m["val_ppl"] = r.perplexity;
      m["val_bpc"] = r.bits_per_char;
      if (r.loss < best_val) {
        best_val = r.loss;
        save(best_path(o.out));
        line += " | best so far";
      }
    }
    if (tty) fmt::print(stderr, "\r\033[K");
    spdlog::info("{}", line);
    spdlog::info("sample: {}",
                 escape_control(o.prompt + sample_completion(model, data.tokenizer, o.prompt, o.seed + step)));
    metrics << m.dump() << "\n" << std::flush;
    save(o.out);
  };

  bool stop = false;
  double synced_progress = progress_of(step, elapsed());  // rank 0's, as of the last step
  while (!stop) {
    if (o.max_steps > 0 && step >= o.max_steps) break;
    // A stop wish (time budget, Ctrl-C) is shared through the all-reduce, so that every rank
    // stops after the same step; a single process stops at once.
    const bool want_stop = (o.time_budget_s > 0 && elapsed() >= o.time_budget_s) || g_stop_signal != 0;
    if (want_stop && !dist.enabled()) break;
    // With only a time budget the schedule follows the clock: rank 0's, in a distributed run,
    // so every rank uses the same learning rate.
    const double progress = progress_of(step, elapsed());
    const double lr = learning_rate(o, step, dist.enabled() ? synced_progress : progress);
    set_learning_rate(optimizer, lr);
    auto batch = batcher.batch(step, dist.rank());
    // Dropout depends on the step (and rank) only, so resumed runs see the same masks.
    torch::manual_seed(o.seed * kSeedStride + static_cast<uint64_t>(step) +
                       kRankStride * static_cast<uint64_t>(dist.rank()));
    StepSignals signals;
    signals.want_stop = want_stop;
    signals.progress = progress;
    const double loss_v =
        train_step(model, optimizer, batch.inputs.to(device), batch.targets.to(device), o.grad_clip, &dist, &signals);
    stop = signals.any_stop;
    synced_progress = signals.main_progress;
    if (!std::isfinite(loss_v)) {
      spdlog::error("loss became {} at step {}; stopped, the last good checkpoint is {}", loss_v, step, o.out);
      return kExitLossNotFinite;
    }
    ++step;
    loss_sum += loss_v;
    ++loss_n;
    ++window_steps;

    const double window_s = std::chrono::duration<double>(Clock::now() - window_start).count();
    if (window_s >= 2.0) {
      tokens_per_s = static_cast<double>(window_steps * tokens_per_step) / window_s;
      window_start = Clock::now();
      window_steps = 0;
    }
    const double since_log = std::chrono::duration<double>(Clock::now() - last_log).count();
    if ((tty && since_log >= kProgressEveryTty) || (!tty && since_log >= kProgressEveryLog)) {
      std::string left;
      if (o.max_steps > 0)
        left = fmt::format("step {}/{}", step, o.max_steps);
      else
        left = fmt::format("step {}", step);
      double remaining = o.time_budget_s > 0 ? o.time_budget_s - elapsed() : INFINITY;
      if (o.max_steps > 0 && tokens_per_s > 0)
        remaining = std::min(remaining, static_cast<double>((o.max_steps - step) * tokens_per_step) / tokens_per_s);
      std::string line = fmt::format("{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s | ETA {}", left, loss_v, lr,
                                     tokens_per_s, std::isfinite(remaining) ? fmt::format("{:.0f}s", remaining) : "?");
      if (tty)
        fmt::print(stderr, "\r\033[K{}", line);
      else
        spdlog::info("{}", line);
      last_log = Clock::now();
    }
    if (step % o.eval_every == 0) {
      const double average = loss_sum / static_cast<double>(loss_n);
      loss_sum = 0;  // a new window starts before the save, which records it
      loss_n = 0;
      finish_eval(average);
    }
  }
  if (loss_n > 0 || step == 0) finish_eval(loss_n > 0 ? loss_sum / static_cast<double>(loss_n) : NAN);
  if (dist.enabled())
    spdlog::info("all-reduce: {:.1f} ms per step ({:.1f} MB per step)",
                 1e3 * dist.allreduce_seconds() / std::max<int64_t>(1, dist.allreduce_calls()),
                 dist.bytes_per_step() / 1e6);
  if (g_stop_signal) {
    spdlog::warn("stopped by signal {} after step {}; checkpoint saved to {} (continue with --resume {})",
                 static_cast<int>(g_stop_signal), step, o.out, o.out);
  } else {
    spdlog::info("done: {} steps in {:.1f}s; checkpoint {}{}", step, elapsed(), o.out,
                 val.empty() ? "" : ", best " + best_path(o.out));
  }
  return 0;  // a stop by signal saved its checkpoint: that is a success too
}

}  // namespace dracarys
