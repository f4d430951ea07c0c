#include "infer/dialogue.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "cli/report.h"
#include "data/corpus.h"
#include "data/errors.h"
#include "data/text.h"
#include "model/conversation.h"

namespace dracarys {

namespace {

// One utterance: `start` (text already fed to the conversation, printed first) and the
// tokens the model adds to it, streamed as they come. Returns the whole line.
std::string speak(LoadedModel& m, Conversation& talk, Sampler& sampler, const std::string& start,
                  const DialogueOptions& opts) {
  WholeCharacters characters(m.tokenizer);
  if (!opts.json) print_text(start, opts.escape);
  const int64_t end = m.tokenizer.eos_id();
  const auto ids = talk.continue_utterance(sampler, opts.max_new_tokens, [&](int64_t id) {
    if (opts.json || id == end) return;
    if (auto text = characters.add(id)) print_text(*text, opts.escape);
  });
  if (!opts.json) {
    print_text(characters.rest().value_or(""), opts.escape);
    print_text("\n", false);  // the line's own end: never escaped
  }
  return start + m.tokenizer.decode(ids);
}

// --json: one object per utterance.
void print_json_line(const LoadedModel& m, int64_t turn, const std::string& line) {
  auto [speaker, text] = m.speaker_prefix ? split_speaker_line(line) : std::pair<std::string, std::string>{"", line};
  nlohmann::json j = {{"turn", turn}, {"speaker", speaker}, {"text", text}, {"line", line}};
  std::printf("%s\n", dump_json(j).c_str());
  std::fflush(stdout);
}

}  // namespace

void play_scene(LoadedModel& m, const std::string& first_line, int64_t turns, const DialogueOptions& opts) {
  Conversation talk(m.model, m.tokenizer.eos_id());
  Sampler sampler(opts.sampling);
  // Every line the model trained on followed the end of the line before it.
  talk.add({m.tokenizer.eos_id()});
  talk.add(m.tokenizer.encode(first_line));
  const std::string line = speak(m, talk, sampler, first_line, opts);
  if (opts.json) print_json_line(m, 0, line);
  for (int64_t turn = 1; turn <= turns; ++turn) {
    const std::string next = speak(m, talk, sampler, "", opts);
    if (next.empty()) {  // a lone end of line: the model closed the episode
      spdlog::info("the model ended the scene after {} of {} turns", turn - 1, turns);
      break;
    }
    if (opts.json) print_json_line(m, turn, next);
  }
  if (talk.rebuilds() > 0)
    spdlog::info("the scene outgrew the context {} time(s): the oldest lines were dropped", talk.rebuilds());
}

int chat(LoadedModel& m, std::istream& in, const ChatOptions& chat, const DialogueOptions& opts) {
  Conversation talk(m.model, m.tokenizer.eos_id());
  Sampler sampler(opts.sampling);
  talk.add({m.tokenizer.eos_id()});
  int64_t turn = 0, bad_lines = 0;
  std::string typed;
  while ((chat.prompt_on_terminal && (std::fprintf(stderr, "%s> ", chat.as.c_str()), std::fflush(stderr))),
         read_line(in, typed)) {
    try {
      check_typed_text(typed);
    } catch (const DataError& e) {
      ++bad_lines;
      spdlog::error("{}; line skipped", e.what());
      continue;
    }
    // Your line, as the corpus writes a line, then its end.
    talk.add(m.tokenizer.encode(speaker_line(chat.as, typed)));
    talk.add({m.tokenizer.eos_id()});
    if (opts.json) {
      print_json_line(m, turn, speaker_line(chat.as, typed));
    } else if (!chat.prompt_on_terminal) {  // piped: the transcript on stdout keeps the questions
      print_text(speaker_line(chat.as, typed) + "\n", opts.escape);
    }
    ++turn;
    // The answer: from the chosen speaker, or from whoever the model says speaks next.
    std::string start;
    if (!chat.reply_as.empty()) {
      start = speaker_line(chat.reply_as, "");
      talk.add(m.tokenizer.encode(start));
    }
    const std::string answer = speak(m, talk, sampler, start, opts);
    if (opts.json) print_json_line(m, turn, answer);
    ++turn;
  }
  if (chat.prompt_on_terminal) std::fprintf(stderr, "\n");
  return bad_lines > 0 && !chat.prompt_on_terminal ? 1 : 0;
}

void list_speakers(const LoadedModel& m, bool json) {
  if (m.speaker_counts.empty())
    throw std::invalid_argument(
        "this checkpoint does not list its corpus's speakers (it was trained without speaker names, or by an older "
        "dracarys-train)");
  const auto by_count = speakers_by_count(m);
  if (json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [name, count] : by_count) list.push_back({{"speaker", name}, {"lines", count}});
    std::printf("%s\n", dump_json({{"speakers", list}}).c_str());
    return;
  }
  for (const auto& [name, count] : by_count)
    std::printf("%8lld  %s\n", static_cast<long long>(count), escape_control(name).c_str());
}

std::string speaker_as_the_corpus_spells_it(const LoadedModel& m, const std::string& name) {
  if (name.empty()) return name;
  const std::string spelled = corpus_speaker_name(m, name);
  if (!spelled.empty()) return spelled;
  const std::string nearest = nearest_speaker(m, name);
  spdlog::warn("--speaker '{}' is not a speaker of the training corpus{}; the model reads it as a new name",
               escape_control(name),
               nearest.empty() ? " (see --list-speakers)" : "; did you mean '" + escape_control(nearest) + "'?");
  return name;
}

}  // namespace dracarys
