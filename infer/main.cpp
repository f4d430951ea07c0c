// dracarys-infer: completes lines with a trained checkpoint, scores text, draws attention,
// benchmarks. main() parses and checks the options, checks the outputs, loads the checkpoint
// once, then hands over to one of the jobs below.
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "common/checkpoint.h"
#include "common/logging.h"
#include "common/option_checks.h"
#include "common/option_table.h"
#include "common/output_files.h"
#include "common/runtime.h"
#include "data/corpus.h"
#include "data/errors.h"
#include "data/text.h"
#include "infer/attention_map.h"
#include "infer/dialogue.h"
#include "infer/inference.h"

using namespace dracarys;

namespace {

constexpr int64_t kMaxNewTokens = 1 << 20;                       // per completion
constexpr int64_t kMaxTurns = 10000;                             // utterances of one --turns scene
constexpr uint64_t kMaxTokenizerFileBytes = uint64_t{64} << 20;  // a larger file is not a tokenizer we wrote

// Every option of dracarys-infer.
struct InferOptions {
  std::string checkpoint;
  std::vector<std::string> prompts;  // -p, repeatable; none: standard input
  std::string speaker;               // prepended as "speaker: " to every prompt
  int64_t max_new_tokens = 100;
  int64_t num_samples = 1;
  bool no_stop = false, no_cache = false, json = false;
  SamplingOptions sampling;
  std::string score;             // --score FILE, or - for standard input
  bool score_lines = false;      // --score-lines: each line's score too
  std::string attention_map;     // --attention-map FILE.svg | FILE.html | -
  int layer = -1, head = -1;     // -1: every layer / head
  std::string export_tokenizer;  // --export-tokenizer FILE
  int64_t turns = 0;             // --turns: utterances after the prompt's line
  bool chat = false;             // --chat: you type lines as --as, the model answers
  std::string as, reply_as;
  bool list_speakers = false;
  bool benchmark = false;
  int64_t benchmark_tokens = 256;
  RuntimeOptions runtime;
};

void add_infer_options(CLI::App& app, InferOptions& o) {
  app.add_option("-c,--checkpoint", o.checkpoint, "Checkpoint written by dracarys-train")->required();
  app.add_option("-p,--prompt", o.prompts,
                 "Text to complete (repeatable). Without it: lines from piped standard input, "
                 "or an interactive session on a terminal");
  app.add_option("--speaker", o.speaker, "Start the line as this character: prepends 'NAME: ' to each prompt");
  app.add_option("-n,--max-new-tokens", o.max_new_tokens, "Most tokens to generate per completion")
      ->capture_default_str();
  app.add_option("--temperature", o.sampling.temperature, "Sampling temperature (> 0; lower is more conservative)")
      ->capture_default_str();
  app.add_option("--top-k", o.sampling.top_k, "Sample among the k most likely tokens (0 = all)")->capture_default_str();
  app.add_option("--top-p", o.sampling.top_p,
                 "Sample from the smallest set of tokens whose probability reaches p, in (0, 1]")
      ->capture_default_str();
  app.add_option("--seed", o.sampling.seed, "Sampling seed: same seed, same text")->capture_default_str();
  app.add_flag("--greedy", o.sampling.greedy, "Always take the most likely token");
  app.add_option("--num-samples", o.num_samples, "Completions per prompt (seeds seed, seed+1, ...)")
      ->capture_default_str();
  app.add_flag("--no-stop", o.no_stop, "Do not stop at the end of the utterance");
  app.add_flag("--no-cache", o.no_cache, "Recompute the whole context for every token (slow; for comparison)");
  app.add_flag("--json", o.json, "One JSON object per completion (prompt, completion, tokens, timings) on stdout");
  app.add_option("--turns", o.turns,
                 "Carry the scene on: after the prompt's line, generate this many more utterances, the model "
                 "choosing who speaks, each printed as 'speaker: text' (with --json, one object each). When the "
                 "scene outgrows the context, the oldest lines are dropped whole and the cache is rebuilt from the "
                 "rest")
      ->capture_default_str();
  app.add_flag("--chat", o.chat,
               "Talk to the model: type lines as the character --as; it answers as whoever it predicts speaks "
               "next, or as --reply-as. The whole conversation stays in the context and its cache. Ctrl-D ends");
  app.add_option("--as", o.as, "--chat: the character you speak as, written as the corpus writes it");
  app.add_option("--reply-as", o.reply_as, "--chat: the character who always answers (default: the model picks)");
  app.add_flag("--list-speakers", o.list_speakers,
               "Print the speakers of the checkpoint's training corpus with their line counts, most lines first");
  app.add_option("--score", o.score,
                 "Report loss, perplexity and bits per character on this text file (- reads standard input)");
  app.add_flag("--score-lines", o.score_lines,
               "With --score: first each line's own score (bits per character, nats per token, tokens), one "
               "per line, or one JSON object per line with --json");
  app.add_option("--attention-map", o.attention_map,
                 "Draw each head's attention for the prompt: FILE.svg, FILE.html, or - for a text heatmap of one "
                 "--layer/--head on the terminal");
  app.add_option("--layer", o.layer, "Only this layer in --attention-map (0-based; text map default 0)");
  app.add_option("--head", o.head, "Only this head in --attention-map (0-based; text map default 0)");
  app.add_option("--export-tokenizer", o.export_tokenizer,
                 "Write the checkpoint's tokenizer as a sentencepiece .model file");
  app.add_flag("--benchmark", o.benchmark,
               "Measure load time, prompt and generation speed (with and without the cache)");
  app.add_option("--benchmark-tokens", o.benchmark_tokens, "Tokens generated per --benchmark run")
      ->capture_default_str();
  add_runtime_options(app, o.runtime);
}

// Ranges of the numeric options; throws std::invalid_argument naming the first one out of range.
void check_infer_options(const CLI::App& app, const InferOptions& o) {
  require_count("--max-new-tokens", o.max_new_tokens, 1, kMaxNewTokens);
  require_number("--temperature", o.sampling.temperature, 0.0, 100.0, /*above_lo=*/true);
  require_count("--top-k", o.sampling.top_k, 0, ModelConfig::kMaxVocab);
  require_number("--top-p", o.sampling.top_p, 0.0, 1.0, /*above_lo=*/true);
  require_count("--num-samples", o.num_samples, 1, 1000);
  require_count("--benchmark-tokens", o.benchmark_tokens, 1, kMaxNewTokens);
  require_count("--turns", o.turns, 0, kMaxTurns);
  if (o.chat && o.as.empty()) throw std::invalid_argument("--chat needs --as NAME: the character you speak as");
  if (!o.chat && (!o.as.empty() || !o.reply_as.empty()))
    throw std::invalid_argument(std::string(o.as.empty() ? "--reply-as" : "--as") + " is for --chat");
  if (o.chat && (o.turns > 0 || !o.prompts.empty()))
    throw std::invalid_argument("--chat reads your lines from standard input; leave out -p and --turns");
  if ((o.chat || o.turns > 0) && (o.no_cache || o.no_stop || o.num_samples > 1))
    throw std::invalid_argument(
        "--no-cache, --no-stop and --num-samples apply to single completions, not to "
        "--turns or --chat");
  if (o.score_lines && o.score.empty()) throw std::invalid_argument("--score-lines needs --score FILE");
  if (app.count("--layer")) require_count("--layer", o.layer, 0, ModelConfig::kMaxLayers - 1);
  if (app.count("--head")) require_count("--head", o.head, 0, ModelConfig::kMaxHeads - 1);
  check_runtime_options(o.runtime);
}

// Outputs are checked before the model is loaded: only files this program wrote are replaced.
void check_outputs(const InferOptions& o) {
  if (!o.export_tokenizer.empty())
    check_output_path(o.export_tokenizer, "--export-tokenizer", [](const std::string& path) {
      try {
        Tokenizer::from_bytes(read_file(path, kMaxTokenizerFileBytes));  // a sentencepiece model: ours to replace
        return true;
      } catch (const std::exception&) {
        return false;
      }
    });
  if (!o.attention_map.empty() && o.attention_map != "-")
    check_output_path(o.attention_map, "--attention-map", is_attention_map_file);
}

// The text the model sees for one prompt: checked, with the speaker's name in front.
std::string prompt_text(const InferOptions& o, const std::string& typed) {
  check_typed_text(typed);
  return o.speaker.empty() ? typed : speaker_line(o.speaker, typed);
}

// --attention-map: one prompt's attention, drawn as SVG, HTML or text.
int draw_attention_map(LoadedModel& m, const InferOptions& o) {
  if (o.prompts.size() != 1) throw std::invalid_argument("--attention-map needs exactly one --prompt");
  auto maps = compute_attention(m.model, m.tokenizer, prompt_text(o, o.prompts.front()));
  if (o.attention_map == "-") {
    std::fputs(render_text(maps, o.layer, o.head).c_str(), stdout);
    return 0;
  }
  const auto& path = o.attention_map;
  const bool html = (path.size() >= 5 && path.substr(path.size() - 5) == ".html") ||
                    (path.size() >= 4 && path.substr(path.size() - 4) == ".htm");
  write_file_atomic(path, html ? render_html(maps, o.layer, o.head) : render_svg(maps, o.layer, o.head));
  spdlog::info("attention of {} tokens, {} layer(s) x {} head(s), written to {}", maps.tokens.size(),
               o.layer < 0 ? maps.layers.size() : 1, o.head < 0 ? maps.layers[0].size(0) : 1, path);
  return 0;
}

DialogueOptions dialogue_options(const InferOptions& o) {
  DialogueOptions d;
  d.sampling = o.sampling;
  d.max_new_tokens = o.max_new_tokens;
  d.json = o.json;
  d.escape = !o.json && ::isatty(STDOUT_FILENO);
  d.fast_decode = o.runtime.kernels == "fast";
  return d;
}

// --chat: lines typed on a terminal or piped in, spoken as --as.
int chat_with(LoadedModel& m, const InferOptions& o) {
  if (!m.speakers) throw std::invalid_argument("--chat needs a model trained with speaker names (not --no-speakers)");
  ChatOptions c;
  c.as = require_known_speaker(m, "--as", o.as);
  if (!o.reply_as.empty()) c.reply_as = require_known_speaker(m, "--reply-as", o.reply_as);
  c.prompt_on_terminal = ::isatty(STDIN_FILENO);
  if (c.prompt_on_terminal)
    std::fprintf(stderr, "You are %s. Type a line and press Enter; Ctrl-D ends.\n", o.as.c_str());
  return chat(m, std::cin, c, dialogue_options(o));
}

// Completions: of every -p, else of each line typed on a terminal or piped in.
int complete_prompts(LoadedModel& m, const InferOptions& o) {
  CompleteOptions options;
  options.json = o.json;
  options.escape = !o.json && ::isatty(STDOUT_FILENO);
  options.generate.sampling = o.sampling;
  options.generate.max_new_tokens = o.max_new_tokens;
  options.generate.use_cache = !o.no_cache;
  options.generate.fast_decode = o.runtime.kernels == "fast";
  if (!o.no_stop) options.generate.stop_token = m.tokenizer.eos_id();
  auto complete_one = [&](const std::string& typed) {
    const std::string prompt = prompt_text(o, typed);
    if (o.turns > 0) {
      play_scene(m, prompt, o.turns, dialogue_options(o));
      return;
    }
    for (int64_t i = 0; i < o.num_samples; ++i) {
      options.generate.sampling.seed = o.sampling.seed + static_cast<uint64_t>(i);
      complete(m, prompt, options);
    }
  };

  if (!o.prompts.empty()) {
    for (const auto& p : o.prompts) complete_one(p);
    return 0;
  }
  std::string line;
  if (::isatty(STDIN_FILENO)) {
    std::fprintf(stderr, "Type the start of a line and press Enter; Ctrl-D ends.\n");
    while (std::fprintf(stderr, "> "), std::fflush(stderr), read_line(std::cin, line)) {
      try {
        complete_one(line);
      } catch (const DataError& e) {
        report_error(e);  // a bad line: say so and wait for the next one
      }
    }
    std::fprintf(stderr, "\n");
    return 0;
  }
  // Piped lines: a bad one is reported and skipped, and the exit code says one was.
  int line_number = 0, bad_lines = 0;
  while (read_line(std::cin, line)) {
    ++line_number;
    try {
      complete_one(line);
    } catch (const DataError& e) {
      ++bad_lines;
      spdlog::error("input line {}: {}; skipped", line_number, e.what());
    }
  }
  return bad_lines > 0 ? 1 : 0;
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
      "  dracarys-infer -c got.pt --score held_out.txt\n"
      "  dracarys-infer -c got.pt -p \"jon snow: Winter is\" --turns 3     (a scene, four lines)\n"
      "  dracarys-infer -c got.pt --chat --as \"jon snow\" --reply-as \"arya stark\""};
  app.get_formatter()->column_width(34);
  InferOptions o;
  add_infer_options(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return report_parse_error(app, e);
  }
  try {
    check_infer_options(app, o);
    check_outputs(o);
    auto device = apply_runtime(o.runtime);
    auto m = load_for_inference(o.checkpoint, device, kernels_from_string(o.runtime.kernels));
    if (!o.export_tokenizer.empty()) {
      write_file_atomic(o.export_tokenizer, m.tokenizer.bytes());
      spdlog::info("tokenizer written to {}", o.export_tokenizer);
      if (o.prompts.empty() && o.score.empty() && o.attention_map.empty() && !o.benchmark && !o.chat &&
          !o.list_speakers)
        return 0;
    }
    if (o.benchmark) {
      benchmark_inference(m, o.benchmark_tokens);
      return 0;
    }
    if (o.list_speakers) {
      list_speakers(m, o.json);
      return 0;
    }
    if (!o.attention_map.empty()) return draw_attention_map(m, o);
    if (o.chat) return chat_with(m, o);
    if (!o.score.empty()) {
      score_file(m, o.score, o.score_lines, o.json);
      return 0;
    }
    return complete_prompts(m, o);
  } catch (const std::exception& e) {
    return report_error(e);
  }
}
