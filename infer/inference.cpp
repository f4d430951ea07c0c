#include "infer/inference.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "cli/report.h"
#include "cli/runtime.h"
#include "data/batching.h"
#include "data/corpus.h"
#include "data/errors.h"
#include "data/text.h"
#include "engine/completion.h"
#include "engine/evaluate.h"
#include "engine/matmul_peak.h"
#include "model/systems/packed_matmul.h"

namespace dracarys {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

bool read_line(std::istream& in, std::string& line) {
  line.clear();
  bool any = false;
  for (int c; (c = in.get()) != EOF;) {
    any = true;
    if (c == '\n') break;
    if (line.size() <= kMaxPromptBytes) line.push_back(static_cast<char>(c));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return any;
}

void print_text(const std::string& text, bool escape) {
  // Line ends are the text's own (an end of utterance decodes to one); other control
  // characters are escaped on a terminal.
  const std::string shown = escape ? escape_control(text, /*keep_newlines=*/true) : text;
  std::fwrite(shown.data(), 1, shown.size(), stdout);
  std::fflush(stdout);
}

namespace {

// --json: one object per completion.
void print_completion_json(const LoadedModel& m, const std::string& prompt, const CompletionResult& r) {
  const auto& st = r.stats;
  std::vector<std::string> pieces;
  for (auto id : r.ids) pieces.push_back(m.tokenizer.piece(id));
  nlohmann::json j = {{"prompt", prompt},
                      {"completion", r.text},
                      {"tokens", r.ids},
                      {"pieces", pieces},
                      {"prompt_tokens", st.prompt_tokens},
                      {"generated_tokens", st.generated_tokens},
                      {"prompt_truncated", st.prompt_truncated},
                      {"load_s", m.load_seconds},
                      {"prompt_s", st.prompt_seconds},
                      {"generate_s", st.generate_seconds},
                      {"prompt_tokens_per_s", st.prompt_tokens / std::max(st.prompt_seconds, 1e-9)},
                      {"gen_tokens_per_s", st.generated_tokens / std::max(st.generate_seconds, 1e-9)}};
  std::printf("%s\n", dump_json(j).c_str());
}

}  // namespace

std::string complete(LoadedModel& m, const std::string& prompt, const CompleteOptions& opts) {
  const int64_t context = m.model->config().context;
  auto ids = prompt_tokens(m.tokenizer, prompt);  // tokenised once, here
  if (static_cast<int64_t>(ids.size()) > context)
    spdlog::warn("prompt has {} tokens, more than the context of {}: keeping the last {}", ids.size(), context,
                 context);
  // The pieces come whole characters at a time (engine/completion.h), printed as they come.
  const bool stream = !opts.json;
  if (stream) print_text(prompt, opts.escape);
  const auto r = run_completion(m, std::move(ids), opts.completion, [&](const CompletionPiece& p) {
    if (stream) print_text(p.text, opts.escape);
    return true;
  });
  if (opts.json) {
    print_completion_json(m, prompt, r);
  } else {
    std::fputc('\n', stdout);  // the line's own end: never escaped
  }
  std::fflush(stdout);
  const auto& st = r.stats;
  spdlog::info("load {:.0f} ms | prompt {} tokens, {:.1f} tokens/s | generated {} tokens, {:.1f} tokens/s",
               m.load_seconds * 1e3, st.prompt_tokens, st.prompt_tokens / std::max(st.prompt_seconds, 1e-9),
               st.generated_tokens, st.generated_tokens / std::max(st.generate_seconds, 1e-9));
  return r.text;
}

namespace {

// The text --score reads: a file, or standard input for "-" (and /dev/stdin), bounded as a
// corpus file is.
std::vector<Utterance> scored_utterances(const std::string& path, const CorpusOptions& options) {
  if (path != "-" && path != "/dev/stdin") return load_corpus({path}, options).utterances;
  std::string bytes;
  char buffer[1 << 16];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, stdin)) > 0;) {
    if (bytes.size() + n > kMaxScoredStdinBytes)
      throw DataError("standard input is longer than " + std::to_string(kMaxScoredStdinBytes >> 20) +
                      " MiB; give --score a file instead");
    bytes.append(buffer, n);
  }
  auto utterances = parse_corpus_text("standard input", bytes, options);
  if (utterances.empty()) throw DataError("standard input holds no lines to score");
  return utterances;
}

void print_score(const std::string& name, const EvalResult& r, size_t utterances, bool json) {
  if (json) {
    nlohmann::json j = {
        {"file", name},       {"loss", r.loss},   {"perplexity", r.perplexity}, {"bits_per_char", r.bits_per_char},
        {"tokens", r.tokens}, {"chars", r.chars}, {"utterances", utterances}};
    std::printf("%s\n", dump_json(j).c_str());
  } else {
    std::printf("%s: loss %.4f nats/token | perplexity %.2f | %.4f bits/char | %lld tokens, %.0f characters\n",
                escape_control(name).c_str(), r.loss, r.perplexity, r.bits_per_char, static_cast<long long>(r.tokens),
                r.chars);
  }
}

// --score-lines: each line's own score, then the total as --score gives it.
void print_line_scores(LoadedModel& m, const std::vector<std::string>& lines, bool json) {
  int64_t number = 0;
  for (const auto& line : lines) {
    if (line.empty()) continue;  // a scene break, not a line
    ++number;
    const auto r =
        evaluate_line(m.model, m.tokenizer.encode(line), m.tokenizer.eos_id(), m.tokenizer.chars_per_token(), m.device);
    if (json) {
      nlohmann::json j = {{"line", number},     {"text", line},    {"loss", r.loss}, {"bits_per_char", r.bits_per_char},
                          {"tokens", r.tokens}, {"chars", r.chars}};
      std::printf("%s\n", dump_json(j).c_str());
    } else {
      std::printf("%6lld  %7.4f bits/char  %8.4f nats/token  %5lld tokens  %s\n", static_cast<long long>(number),
                  r.bits_per_char, r.loss, static_cast<long long>(r.tokens), escape_control(line).c_str());
    }
  }
}

}  // namespace

void score_file(LoadedModel& m, const std::string& path, bool per_line, bool json) {
  CorpusOptions corpus_options;
  corpus_options.speaker_prefix = m.speaker_prefix;
  const auto utterances = scored_utterances(path, corpus_options);
  const auto lines = training_lines(utterances, corpus_options.speaker_prefix,
                                    corpus_options.speaker_prefix && mixes_named_and_unnamed(utterances));
  if (per_line) print_line_scores(m, lines, json);
  auto stream = tokenize_lines(m.tokenizer, lines);
  auto batches = eval_batches(stream, m.tokenizer.chars_per_token(), m.model->config().context, 16);
  print_score(path == "/dev/stdin" ? "-" : path, evaluate(m.model, batches, m.device), utterances.size(), json);
}

namespace {

// The step's matrix products alone, for B vectors: matrices of the model's shapes packed in its
// weight format, each multiplied once, the median of five runs (what the rest of the step,
// attention over the caches, norms and activations, adds is the step's time less this).
double products_seconds(const ModelConfig& c, WeightFormat format, int64_t B) {
  std::vector<kernels::PackedMatrix> matrices;
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {3 * c.d_model, c.d_model}, {c.d_model, c.d_model}, {c.d_ff, c.d_model}, {c.d_model, c.d_ff}}) {
    const auto W = torch::randn({rows, cols});
    for (int64_t l = 0; l < c.layers; ++l)
      matrices.push_back(format == WeightFormat::kQ8 ? kernels::pack_q8(W.data_ptr<float>(), rows, cols)
                                                     : kernels::pack_f32(W.data_ptr<float>(), rows, cols));
  }
  const auto head = torch::randn({c.vocab_size, c.d_model});
  matrices.push_back(format == WeightFormat::kQ8 ? kernels::pack_q8(head.data_ptr<float>(), c.vocab_size, c.d_model)
                                                 : kernels::pack_f32(head.data_ptr<float>(), c.vocab_size, c.d_model));
  const auto X = torch::randn({B, std::max(c.d_model, c.d_ff)});
  auto Y = torch::empty({B, std::max(c.vocab_size, std::max(3 * c.d_model, c.d_ff))});
  std::vector<double> runs;
  for (int run = 0; run < 6; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& W : matrices) kernels::matmul_packed(W, nullptr, X.data_ptr<float>(), Y.data_ptr<float>(), B);
    if (run > 0) runs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(runs);
}

// The one-token step for B sequences at once (the server's continuous batching), each after a
// prompt of 16 tokens: its time and the GFLOP/s of its matrix products (2 per weight per
// sequence), the median of five timed windows.
nlohmann::json batched_step(LoadedModel& m, int64_t B, double peak) {
  const auto& c = m.model->config();
  const int64_t prompt = std::min<int64_t>(16, c.context / 2), steps = std::min<int64_t>(32, c.context - prompt - 1);
  const double flops =
      2.0 * static_cast<double>(B) *
      static_cast<double>(c.layers * (4 * c.d_model * c.d_model + 2 * c.d_model * c.d_ff) + c.vocab_size * c.d_model);
  std::vector<double> seconds;
  for (int window = 0; window < 6; ++window) {
    std::vector<KVCache> caches(B, m.model->make_cache());
    std::vector<KVCache*> pointers;
    std::vector<int64_t> tokens(B);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int64_t> ids(prompt, (b * 7) % c.vocab_size);
      m.model->forward(one_sequence(ids, m.device), &caches[b]);
      pointers.push_back(&caches[b]);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s) {
      for (int64_t b = 0; b < B; ++b) tokens[b] = (b * 13 + s * 3) % c.vocab_size;
      m.model->decode_batch(tokens, pointers.data());
    }
    if (window > 0)  // the first warms the caches and the packed weights
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps);
  }
  const double step_s = median(seconds), products_s = products_seconds(c, m.model->weight_format(), B);
  return {{"batch", B},
          {"step_ms", step_s * 1e3},
          {"products_ms", products_s * 1e3},
          {"tokens_per_s", static_cast<double>(B) / step_s},
          {"gflops", flops / step_s / 1e9},
          {"share_of_peak", flops / step_s / peak}};
}

}  // namespace

void benchmark_inference(LoadedModel& m, int64_t new_tokens) {
  const int64_t ctx = m.model->config().context;
  // A prompt of half the context, from real text, repeated as needed.
  auto base = m.tokenizer.encode("cersei lannister: When you play the game of thrones, you win or you die. ");
  std::vector<int64_t> prompt;
  while (static_cast<int64_t>(prompt.size()) < std::max<int64_t>(1, ctx / 2))
    prompt.push_back(base[prompt.size() % base.size()]);
  GenerateOptions g;
  g.max_new_tokens = new_tokens;
  g.sampling.greedy = true;
  // Three ways to generate, interleaved (fast, reference, uncached, fast, ...) so that a machine
  // busy for a moment slows all three alike; each figure is the median of its nine runs (five
  // left the fast-over-reference ratio swinging by ±20% between runs on a busy machine).
  enum Way { kFast, kReference, kUncached };
  std::vector<double> gen[3], pre;
  const Kernels chosen = m.model->kernels();
  for (int repeat = 0; repeat < 9; ++repeat)
    for (Way way : {kFast, kReference, kUncached}) {
      g.use_cache = way != kUncached;
      m.model->set_kernels(way == kReference ? Kernels::kReference : Kernels::kFast);
      GenerateStats st;
      generate(m.model, prompt, g, nullptr, &st);
      gen[way].push_back(st.generated_tokens / st.generate_seconds);
      if (way == kFast) pre.push_back(st.prompt_tokens / st.prompt_seconds);
    }
  m.model->set_kernels(chosen);
  torch::NoGradGuard no_grad;
  const double peak = matmul_flops(1024, 1024, 1024, m.device);
  nlohmann::json batched = nlohmann::json::array();
  for (int64_t B : {1, 8, 32, 64}) batched.push_back(batched_step(m, B, peak));
  const double prompt_tps = median(pre), cached = median(gen[kFast]), reference = median(gen[kReference]),
               uncached = median(gen[kUncached]);
  nlohmann::json j = {{"benchmark", "infer"},
                      {"device", m.device.str()},
                      {"parameters", m.model->config().parameter_count()},
                      {"context", ctx},
                      {"prompt_tokens", prompt.size()},
                      {"new_tokens", new_tokens},
                      {"load_s", m.load_seconds},
                      {"prompt_tokens_per_s", prompt_tps},
                      {"gen_tokens_per_s", cached},
                      {"gen_tokens_per_s_reference", reference},
                      {"gen_tokens_per_s_nocache", uncached},
                      {"fast_over_reference", cached / reference},
                      {"cache_speedup", cached / uncached},
                      {"weights", to_string(m.model->weight_format())},
                      {"matmul_peak_flops_per_s", peak},
                      {"batched_step", batched},
                      {"peak_rss_mb", peak_rss_mb()}};
  spdlog::info(
      "infer benchmark: load {:.0f} ms, prompt {:.0f} tokens/s, generation {:.0f} tokens/s (fast one-token step) vs "
      "{:.0f} (reference step, {:.2f}x) vs {:.0f} uncached ({:.1f}x)",
      m.load_seconds * 1e3, prompt_tps, cached, reference, cached / reference, uncached, cached / uncached);
  for (const auto& b : batched)
    spdlog::info(
        "batched step of {}: {:.2f} ms ({:.2f} in the products alone), {:.0f} tokens/s, {:.1f} GFLOP/s ({:.0f}% "
        "of the {:.0f} GFLOP/s matmul peak)",
        b["batch"].get<int64_t>(), b["step_ms"].get<double>(), b["products_ms"].get<double>(),
        b["tokens_per_s"].get<double>(), b["gflops"].get<double>(), 100 * b["share_of_peak"].get<double>(), peak / 1e9);
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace dracarys
