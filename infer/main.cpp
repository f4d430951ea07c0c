// dracarys-infer: completes lines with a trained checkpoint, scores text, benchmarks.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "common/checkpoint.h"
#include "common/logging.h"
#include "common/option_checks.h"
#include "common/output_files.h"
#include "common/runtime.h"
#include "data/corpus.h"
#include "data/errors.h"
#include "data/text.h"
#include "infer/attention_map.h"
#include "infer/inference.h"

using namespace dracarys;

namespace {
constexpr int64_t kMaxNewTokens = 1 << 20;   // per completion
constexpr size_t kMaxPromptBytes = 1 << 20;  // a longer line (or -p) is refused, not tokenised

// std::getline with a bound: a line longer than kMaxPromptBytes becomes a DataError for that
// line (its rest is read and dropped), so endless input without newlines cannot fill memory.
bool read_line(std::istream& in, std::string& line) {
  line.clear();
  bool any = false;
  for (int c; (c = in.get()) != EOF;) {
    any = true;
    if (c == '\n') return true;
    if (line.size() <= kMaxPromptBytes) line.push_back(static_cast<char>(c));
  }
  return any;
}
}  // namespace

int main(int argc, char** argv) {
  setup_logging();
  CLI::App app{
      "dracarys-infer: complete a line of dialogue with a trained dracarys checkpoint.\n"
      "Examples:\n"
      "  dracarys-infer -c got.pt -p \"cersei lannister: When you play the game of thrones, you\"\n"
      "  dracarys-infer -c got.pt --speaker \"tyrion lannister\" -p \"I drink and\" --num-samples 3\n"
      "  echo \"arya stark: Not\" | dracarys-infer -c got.pt --json\n"
      "  dracarys-infer -c got.pt                  (interactive: type a line, Ctrl-D ends)\n"
      "  dracarys-infer -c got.pt --score held_out.txt"};
  app.get_formatter()->column_width(34);
  std::string checkpoint, speaker, score, export_tokenizer, attention_map;
  int layer = -1, head = -1;
  std::vector<std::string> prompts;
  int64_t max_new = 100, num_samples = 1, bench_tokens = 256;
  bool json = false, benchmark = false, no_stop = false, no_cache = false;
  SamplingOptions s;
  RuntimeOptions rt;
  app.add_option("-c,--checkpoint", checkpoint, "Checkpoint written by dracarys-train")->required();
  app.add_option("-p,--prompt", prompts, "Text to complete (repeatable). Without it: lines from piped standard input, "
                                         "or an interactive session on a terminal");
  app.add_option("--speaker", speaker, "Start the line as this character: prepends 'NAME: ' to each prompt");
  app.add_option("-n,--max-new-tokens", max_new, "Most tokens to generate per completion")
      ->capture_default_str();
  app.add_option("--temperature", s.temperature, "Sampling temperature (> 0; lower is more conservative)")
      ->capture_default_str();
  app.add_option("--top-k", s.top_k, "Sample among the k most likely tokens (0 = all)")->capture_default_str();
  app.add_option("--top-p", s.top_p, "Sample from the smallest set of tokens whose probability reaches p, in (0, 1]")
      ->capture_default_str();
  app.add_option("--seed", s.seed, "Sampling seed: same seed, same text")->capture_default_str();
  app.add_flag("--greedy", s.greedy, "Always take the most likely token");
  app.add_option("--num-samples", num_samples, "Completions per prompt (seeds seed, seed+1, ...)")
      ->capture_default_str();
  app.add_flag("--no-stop", no_stop, "Do not stop at the end of the utterance");
  app.add_flag("--no-cache", no_cache, "Recompute the whole context for every token (slow; for comparison)");
  app.add_flag("--json", json, "One JSON object per completion (prompt, completion, tokens, timings) on stdout");
  app.add_option("--score", score, "Report loss, perplexity and bits per character on this text file");
  app.add_option("--attention-map", attention_map,
                 "Draw each head's attention for the prompt: FILE.svg, FILE.html, or - for a text heatmap of one "
                 "--layer/--head on the terminal");
  app.add_option("--layer", layer, "Only this layer in --attention-map (0-based; text map default 0)");
  app.add_option("--head", head, "Only this head in --attention-map (0-based; text map default 0)");
  app.add_option("--export-tokenizer", export_tokenizer, "Write the checkpoint's tokenizer as a sentencepiece .model file");
  app.add_flag("--benchmark", benchmark, "Measure load time, prompt and generation speed (with and without the cache)");
  app.add_option("--benchmark-tokens", bench_tokens, "Tokens generated per --benchmark run")->capture_default_str();
  app.add_option("--threads", rt.threads, "BLAS threads (0 = every core)")->capture_default_str();
  app.add_option("--intra-op-threads", rt.intra_op_threads, "LibTorch intra-op threads")->capture_default_str();
  app.add_option("--device", rt.device, "auto, cpu or cuda[:N]")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    require_count("--max-new-tokens", max_new, 1, kMaxNewTokens);
    require_number("--temperature", s.temperature, 0.0, 100.0, /*above_lo=*/true);
    require_count("--top-k", s.top_k, 0, ModelConfig::kMaxVocab);
    require_number("--top-p", s.top_p, 0.0, 1.0, /*above_lo=*/true);
    require_count("--num-samples", num_samples, 1, 1000);
    require_count("--benchmark-tokens", bench_tokens, 1, kMaxNewTokens);
    if (app.count("--layer")) require_count("--layer", layer, 0, ModelConfig::kMaxLayers - 1);
    if (app.count("--head")) require_count("--head", head, 0, ModelConfig::kMaxHeads - 1);
    check_runtime_options(rt);
    // Outputs are checked before the model is loaded: only files this program wrote are replaced.
    if (!export_tokenizer.empty())
      check_output_path(export_tokenizer, "--export-tokenizer", [](const std::string& path) {
        try {
          Tokenizer::from_bytes(read_file(path));  // a sentencepiece model: ours to replace
          return true;
        } catch (const std::exception&) {
          return false;
        }
      });
    if (!attention_map.empty() && attention_map != "-")
      check_output_path(attention_map, "--attention-map", is_attention_map_file);
    auto device = apply_runtime(rt);
    auto m = load_for_inference(checkpoint, device);
    spdlog::info("loaded {} ({} parameters) in {:.0f} ms; {}", checkpoint, m.model->config().parameter_count(),
                 m.load_seconds * 1e3, runtime_summary());
    if (!export_tokenizer.empty()) {
      write_file_atomic(export_tokenizer, m.tokenizer.bytes());
      spdlog::info("tokenizer written to {}", export_tokenizer);
    }
    if (benchmark) {
      benchmark_inference(m, bench_tokens);
      return 0;
    }
    if (!attention_map.empty()) {
      if (prompts.size() != 1) throw std::invalid_argument("--attention-map needs exactly one --prompt");
      std::string prompt = prompts.front();
      if (!valid_utf8(prompt)) throw DataError("prompt is not valid UTF-8");
      if (!speaker.empty()) prompt = speaker + ":" + (prompt.empty() ? "" : " " + prompt);
      auto maps = compute_attention(m.model, m.tokenizer, prompt);
      if (attention_map == "-") {
        std::fputs(render_text(maps, layer, head).c_str(), stdout);
        return 0;
      }
      const bool html = attention_map.size() >= 5 && (attention_map.substr(attention_map.size() - 5) == ".html" ||
                                                      attention_map.substr(attention_map.size() - 4) == ".htm");
      const std::string doc = html ? render_html(maps, layer, head) : render_svg(maps, layer, head);
      write_file_atomic(attention_map, doc);
      spdlog::info("attention of {} tokens, {} layer(s) x {} head(s), written to {}", maps.tokens.size(),
                   layer < 0 ? maps.layers.size() : 1, head < 0 ? maps.layers[0].size(0) : 1, attention_map);
      return 0;
    }
    if (!score.empty()) {
      score_file(m, score, json);
      return 0;
    }
    if (!export_tokenizer.empty() && prompts.empty()) return 0;

    CompleteOptions co;
    co.json = json;
    co.escape = !json && ::isatty(STDOUT_FILENO);
    co.generate.sampling = s;
    co.generate.max_new_tokens = max_new;
    co.generate.use_cache = !no_cache;
    if (!no_stop) co.generate.stop_token = m.tokenizer.eos_id();
    auto run = [&](std::string prompt) {
      if (prompt.size() > kMaxPromptBytes)
        throw DataError("prompt is longer than " + std::to_string(kMaxPromptBytes) + " bytes");
      if (!valid_utf8(prompt)) throw DataError("prompt is not valid UTF-8");
      if (!speaker.empty()) prompt = speaker + ":" + (prompt.empty() ? "" : " " + prompt);
      for (int64_t i = 0; i < num_samples; ++i) {
        co.generate.sampling.seed = s.seed + static_cast<uint64_t>(i);
        complete(m, prompt, co);
      }
    };
    if (!prompts.empty()) {
      for (const auto& p : prompts) run(p);
    } else if (::isatty(STDIN_FILENO)) {
      std::fprintf(stderr, "Type the start of a line and press Enter; Ctrl-D ends.\n");
      std::string line;
      while (std::fprintf(stderr, "> "), std::fflush(stderr), read_line(std::cin, line)) {
        try {
          run(line);
        } catch (const DataError& e) {
          report_error(e);  // a bad line: say so and wait for the next one
        }
      }
      std::fprintf(stderr, "\n");
    } else {
      // Piped lines: a bad one is reported and skipped, and the exit code says one was.
      std::string line;
      int line_number = 0, bad_lines = 0;
      while (read_line(std::cin, line)) {
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        try {
          run(line);
        } catch (const DataError& e) {
          ++bad_lines;
          spdlog::error("input line {}: {}; skipped", line_number, e.what());
        }
      }
      if (bad_lines > 0) return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}
