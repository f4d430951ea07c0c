// dracarys-infer: completes lines with a trained checkpoint, scores text, draws attention,
// benchmarks. main() parses and checks the options, checks the outputs, loads the checkpoint
// once, then hands over to one of the jobs below.
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "checkpoint/checkpoint.h"
#include "checkpoint/output_files.h"
#include "cli/logging.h"
#include "cli/option_checks.h"
#include "cli/option_table.h"
#include "cli/runtime.h"
#include "data/corpus.h"
#include "data/errors.h"
#include "data/text.h"
#include "engine/probe.h"
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
  std::vector<std::string> stop;  // --stop, repeatable
  SamplingOptions sampling;
  std::string score;             // --score FILE, or - for standard input
  bool score_lines = false;      // --score-lines: each line's score too
  std::string attention_map;     // --attention-map FILE.svg | FILE.html | -
  bool explain = false;          // --explain: one head's every box instead of the filters
  std::string probe_strip;       // --probe-strip FILE.svg | FILE.html: the checkpoint's probe over training
  std::string probe_file;        // --probe-file: the probe record to draw; default CHECKPOINT.probe
  int layer = -1, head = -1;     // -1: every layer / head
  std::string export_tokenizer;  // --export-tokenizer FILE
  int64_t turns = 0;             // --turns: utterances after the prompt's line
  bool chat = false;             // --chat: you type lines as --as, the model answers
  std::string as, reply_as;
  bool list_speakers = false;
  bool benchmark = false;
  int64_t benchmark_tokens = 256;
  std::string weights = "f32";  // --weights f32 | q8
  RuntimeOptions runtime;
};

// Every option of dracarys-infer, once: flag, group, help and range (cli/option_table.h).
// Registering them and checking their ranges are visits over this list.
template <class Visit>
void for_each_infer_option(InferOptions& o, Visit&& visit) {
  const char* what = "What to do (completions by default)";
  visit(OptionSpec("-c,--checkpoint", what, "Checkpoint written by dracarys-train").no_default().must_be_given(),
        o.checkpoint);
  visit(OptionSpec("-p,--prompt", what,
                   "Text to complete (repeatable). Without it: lines from piped standard input, or an interactive "
                   "session on a terminal")
            .no_default(),
        o.prompts);
  visit(OptionSpec("--turns", what,
                   "Carry the scene on: after the prompt's line, generate this many more utterances, the model "
                   "choosing who speaks, each printed as 'speaker: text' (with --json, one object each). When the "
                   "scene outgrows the context, the oldest lines are dropped whole and the cache is rebuilt from "
                   "the rest")
            .range(0, kMaxTurns),
        o.turns);
  visit(OptionSpec("--chat", what,
                   "Talk to the model: type lines as the character --as; it answers as whoever it predicts speaks "
                   "next, or as --reply-as. The whole conversation stays in the context and its cache. Ctrl-D ends"),
        o.chat);
  visit(OptionSpec("--score", what,
                   "Report loss, perplexity and bits per character on this text file (- reads standard input)")
            .no_default(),
        o.score);
  visit(OptionSpec("--attention-map", what,
                   "Draw each head's attention for the prompt: FILE.svg, FILE.html, or - for a text heatmap of one "
                   "--layer/--head on the terminal")
            .no_default(),
        o.attention_map);
  visit(OptionSpec("--probe-strip", what,
                   "Draw one --layer/--head's filter for training's probe line (CHECKPOINT.probe, written by "
                   "dracarys-train --probe) at up to 8 of its evaluations, side by side: FILE.svg or FILE.html")
            .no_default(),
        o.probe_strip);
  visit(OptionSpec("--probe-file", what, "The probe file --probe-strip draws (default: CHECKPOINT.probe)").no_default(),
        o.probe_file);
  visit(OptionSpec("--list-speakers", what,
                   "Print the speakers of the checkpoint's training corpus with their line counts, most lines first"),
        o.list_speakers);
  visit(OptionSpec("--export-tokenizer", what, "Write the checkpoint's tokenizer as a sentencepiece .model file")
            .no_default(),
        o.export_tokenizer);
  visit(OptionSpec("--benchmark", what, "Measure load time, prompt and generation speed (with and without the cache)"),
        o.benchmark);

  const char* line = "Completion";
  visit(
      OptionSpec("--speaker", line, "Start the line as this character: prepends 'NAME: ' to each prompt").no_default(),
      o.speaker);
  visit(OptionSpec("-n,--max-new-tokens", line, "Most tokens to generate per completion").range(1, kMaxNewTokens),
        o.max_new_tokens);
  visit(OptionSpec("--num-samples", line, "Completions per prompt (seeds seed, seed+1, ...)").range(1, 1000),
        o.num_samples);
  visit(OptionSpec("--no-stop", line, "Do not stop at the end of the utterance"), o.no_stop);
  visit(OptionSpec("--stop", line,
                   "End the completion where this text first appears, without it (repeatable; single completions)")
            .no_default(),
        o.stop);
  visit(OptionSpec("--no-cache", line, "Recompute the whole context for every token (slow; for comparison)"),
        o.no_cache);
  visit(OptionSpec("--json", line, "One JSON object per completion (prompt, completion, tokens, timings) on stdout"),
        o.json);
  visit(OptionSpec("--as", line, "--chat: the character you speak as, written as the corpus writes it").no_default(),
        o.as);
  visit(OptionSpec("--reply-as", line, "--chat: the character who always answers (default: the model picks)")
            .no_default(),
        o.reply_as);

  const char* sampling = "Sampling";
  visit(OptionSpec("--temperature", sampling, "Sampling temperature (> 0; lower is more conservative)")
            .above(0, SamplingOptions::kMaxTemperature),
        o.sampling.temperature);
  visit(OptionSpec("--top-k", sampling, "Sample among the k most likely tokens (0 = all)")
            .range(0, ModelConfig::kMaxVocab),
        o.sampling.top_k);
  visit(OptionSpec("--top-p", sampling, "Sample from the smallest set of tokens whose probability reaches p, in (0, 1]")
            .above(0, 1),
        o.sampling.top_p);
  visit(OptionSpec("--min-p", sampling, "Drop tokens less likely than this times the most likely one (0 = off)")
            .range(0, 1),
        o.sampling.min_p);
  visit(OptionSpec("--repeat-penalty", sampling,
                   "Divide the logits of recently seen tokens by this (llama.cpp's; 1 = off)")
            .above(0, 10),
        o.sampling.repeat_penalty);
  visit(OptionSpec("--repeat-last-n", sampling, "How many recent tokens the penalties look at").range(0, 1 << 20),
        o.sampling.repeat_last_n);
  visit(
      OptionSpec("--presence-penalty", sampling, "Subtract this from the logit of each recently seen token (OpenAI's)")
          .range(-2, 2),
      o.sampling.presence_penalty);
  visit(OptionSpec("--frequency-penalty", sampling,
                   "Subtract this times its count from the logit of each recently seen token (OpenAI's)")
            .range(-2, 2),
        o.sampling.frequency_penalty);
  visit(OptionSpec("--seed", sampling, "Sampling seed: same seed, same text"), o.sampling.seed);
  visit(OptionSpec("--greedy", sampling, "Always take the most likely token"), o.sampling.greedy);

  const char* detail = "Scoring, attention and benchmark";
  visit(OptionSpec("--score-lines", detail,
                   "With --score: first each line's own score (bits per character, nats per token, tokens), one "
                   "per line, or one JSON object per line with --json"),
        o.score_lines);
  visit(OptionSpec("--explain", detail,
                   "With --attention-map FILE.svg or FILE.html: draw one --layer/--head's every box of attention "
                   "(Q, K, V, the scores, scaled, masked, the filter, filter·V, the concatenation, the output), "
                   "each with its shape and what it does"),
        o.explain);
  visit(OptionSpec("--layer", detail,
                   "Only this layer in --attention-map; the layer of --explain and --probe-strip (0-based; default 0 "
                   "where one is needed)")
            .range(0, ModelConfig::kMaxLayers - 1)
            .no_default(),
        o.layer);
  visit(OptionSpec("--head", detail,
                   "Only this head in --attention-map; the head of --explain and --probe-strip (0-based; default 0 "
                   "where one is needed)")
            .range(0, ModelConfig::kMaxHeads - 1)
            .no_default(),
        o.head);
  visit(weights_option(detail), o.weights);
  visit(OptionSpec("--benchmark-tokens", detail, "Tokens generated per --benchmark run").range(1, kMaxNewTokens),
        o.benchmark_tokens);
}

void add_infer_options(CLI::App& app, InferOptions& o) {
  for_each_infer_option(o, [&app](const OptionSpec& spec, auto& member) { add_to_app(app, spec, member); });
  add_runtime_options(app, o.runtime);
}

// Ranges of the numeric options, and the options that go together; throws std::invalid_argument
// naming the first one out of place.
void check_infer_options(const CLI::App& app, const InferOptions& o) {
  InferOptions copy = o;
  for_each_infer_option(copy, [&app](const OptionSpec& spec, const auto& member) {
    const bool default_is_all = spec.flag == "--layer" || spec.flag == "--head";  // -1: every layer or head
    if (!default_is_all || app.count(spec.flag)) check_range(spec, member);
  });
  if (o.chat && o.as.empty()) throw std::invalid_argument("--chat needs --as NAME: the character you speak as");
  if (!o.chat && (!o.as.empty() || !o.reply_as.empty()))
    throw std::invalid_argument(std::string(o.as.empty() ? "--reply-as" : "--as") + " is for --chat");
  if (o.chat && (o.turns > 0 || !o.prompts.empty()))
    throw std::invalid_argument("--chat reads your lines from standard input; leave out -p and --turns");
  if ((o.chat || o.turns > 0) && (o.no_cache || o.no_stop || o.num_samples > 1 || !o.stop.empty()))
    throw std::invalid_argument(
        "--no-cache, --no-stop, --stop and --num-samples apply to single completions, not to "
        "--turns or --chat");
  for (const auto& s : o.stop)
    if (s.empty()) throw std::invalid_argument("--stop needs a text that is not empty");
  if (o.score_lines && o.score.empty()) throw std::invalid_argument("--score-lines needs --score FILE");
  if (!o.probe_file.empty() && o.probe_strip.empty())
    throw std::invalid_argument("--probe-file is for --probe-strip FILE");
  if (o.explain && (o.attention_map.empty() || o.attention_map == "-"))
    throw std::invalid_argument("--explain draws into --attention-map FILE.svg or FILE.html");
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
  if (!o.probe_strip.empty()) check_output_path(o.probe_strip, "--probe-strip", is_attention_map_file);
}

bool is_html_path(const std::string& path) {
  return (path.size() >= 5 && path.substr(path.size() - 5) == ".html") ||
         (path.size() >= 4 && path.substr(path.size() - 4) == ".htm");
}

// The text the model sees for one prompt: checked, with the speaker's name in front.
std::string prompt_text(const InferOptions& o, const std::string& typed) {
  check_typed_text(typed);
  return o.speaker.empty() ? typed : speaker_line(o.speaker, typed);
}

// --explain: one head's every box for the prompt's tokens, drawn as SVG or HTML.
int draw_boxes(LoadedModel& m, const InferOptions& o, const std::string& text) {
  const auto traced = trace_sequence(m.model, m.tokenizer, m.tokenizer.encode(text));
  const int layer = std::max(o.layer, 0), head = std::max(o.head, 0);
  const auto& path = o.attention_map;  // (rendering refuses a layer or head the model lacks, before any write)
  write_file_atomic(
      path, is_html_path(path) ? render_boxes_html(traced, layer, head) : render_boxes_svg(traced, layer, head));
  spdlog::info("every box of layer {}, head {} for {} tokens, written to {}", layer, head, traced.ids.size(), path);
  return 0;
}

// --attention-map: one prompt's attention, drawn as SVG, HTML or text (or, with --explain, its boxes).
int draw_attention_map(LoadedModel& m, const InferOptions& o) {
  if (o.prompts.size() != 1) throw std::invalid_argument("--attention-map needs exactly one --prompt");
  const std::string text = prompt_text(o, o.prompts.front());
  if (o.explain) return draw_boxes(m, o, text);
  auto maps = compute_attention(m.model, m.tokenizer, text);
  if (o.attention_map == "-") {
    std::fputs(render_text(maps, o.layer, o.head).c_str(), stdout);
    return 0;
  }
  const auto& path = o.attention_map;
  write_file_atomic(path, is_html_path(path) ? render_html(maps, o.layer, o.head) : render_svg(maps, o.layer, o.head));
  spdlog::info("attention of {} tokens, {} layer(s) x {} head(s), written to {}", maps.tokens.size(),
               o.layer < 0 ? maps.layers.size() : 1, o.head < 0 ? maps.layers[0].size(0) : 1, path);
  return 0;
}

// --probe-strip: the probe file (beside the checkpoint, unless --probe-file), one head's filter over training.
int draw_probe_strip(const InferOptions& o) {
  const std::string path = o.probe_file.empty() ? probe_path(o.checkpoint) : o.probe_file;
  if (!std::filesystem::exists(path))
    throw std::invalid_argument("no probe file " + path + ": dracarys-train --probe writes it beside the checkpoint");
  const auto record = read_probe_file(path);
  check_probe_fits(record, load_checkpoint(o.checkpoint).config, path);  // drawn only for the model it was made for
  const int layer = std::max(o.layer, 0), head = std::max(o.head, 0);
  write_file_atomic(o.probe_strip, is_html_path(o.probe_strip) ? render_probe_html(record, layer, head)
                                                               : render_probe_svg(record, layer, head));
  spdlog::info("layer {}, head {} at {} of {} evaluations (steps {} to {}), written to {}", layer, head,
               std::min(record.snapshots.size(), kProbeStripPanels), record.snapshots.size(),
               record.snapshots.empty() ? 0 : record.snapshots.front().step,
               record.snapshots.empty() ? 0 : record.snapshots.back().step, o.probe_strip);
  return 0;
}

DialogueOptions dialogue_options(const InferOptions& o) {
  DialogueOptions d;
  d.sampling = o.sampling;
  d.max_new_tokens = o.max_new_tokens;
  d.json = o.json;
  d.escape = !o.json && ::isatty(STDOUT_FILENO);
  return d;
}

// --chat: lines typed on a terminal or piped in, spoken as --as.
int chat_with(LoadedModel& m, const InferOptions& o) {
  if (!m.speaker_prefix)
    throw std::invalid_argument("--chat needs a model trained with speaker names (not --no-speakers)");
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
  options.completion.sampling = o.sampling;
  options.completion.max_new_tokens = o.max_new_tokens;
  options.completion.use_cache = !o.no_cache;
  options.completion.ignore_end = o.no_stop;
  options.completion.stop = o.stop;
  auto complete_one = [&](const std::string& typed) {
    const std::string prompt = prompt_text(o, typed);
    if (o.turns > 0) {
      play_scene(m, prompt, o.turns, dialogue_options(o));
      return;
    }
    for (int64_t i = 0; i < o.num_samples; ++i) {
      options.completion.sampling.seed = o.sampling.seed + static_cast<uint64_t>(i);
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
  use_the_cpus_blas_kernels(argv);
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
    auto m = load_for_inference(o.checkpoint, device, kernels_from_string(o.runtime.kernels),
                                weight_format_from_string(o.weights));
    if (!o.export_tokenizer.empty()) {
      write_file_atomic(o.export_tokenizer, m.tokenizer.bytes());
      spdlog::info("tokenizer written to {}", o.export_tokenizer);
      if (o.prompts.empty() && o.score.empty() && o.attention_map.empty() && o.probe_strip.empty() && !o.benchmark &&
          !o.chat && !o.list_speakers)
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
    o.speaker = speaker_as_the_corpus_spells_it(m, o.speaker);
    if (!o.attention_map.empty()) return draw_attention_map(m, o);
    if (!o.probe_strip.empty()) return draw_probe_strip(o);
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
