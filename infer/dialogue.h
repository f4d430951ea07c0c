// Dialogue with a trained model: a scene it carries on by itself (--turns), a chat in which you
// speak as one character (--chat --as), and the speakers it knows (--list-speakers). Both keep
// the whole exchange in one model/conversation.h Conversation, so the KV cache is carried from
// one line to the next instead of being recomputed.
#pragma once

#include <cstdint>
#include <istream>
#include <string>

#include "infer/inference.h"
#include "model/sampler.h"

namespace dracarys {

struct DialogueOptions {
  SamplingOptions sampling;
  int64_t max_new_tokens = 100;  // per utterance
  bool json = false;             // one JSON object per utterance instead of text
  bool escape = false;           // show control characters as escapes (stdout is a terminal)
};

// Completes `first_line` (already "speaker: start"), then `turns` more utterances, each
// printed as it is generated on its own line as "speaker: text". Stops early when the model
// ends the scene (a blank line: the episode is over).
void play_scene(LoadedModel& m, const std::string& first_line, int64_t turns, const DialogueOptions& opts);

struct ChatOptions {
  std::string as;                   // the character whose lines you type
  std::string reply_as;             // empty: the model picks who answers
  bool prompt_on_terminal = false;  // show "name> " before each line (standard input is a terminal)
};

// Reads lines from `in` until its end (Ctrl-D), each spoken as `chat.as`, and prints the
// model's answer to each. A line that is not valid UTF-8 or too long is reported and skipped.
// Returns the exit code (1 when a piped line had to be skipped).
int chat(LoadedModel& m, std::istream& in, const ChatOptions& chat, const DialogueOptions& opts);

// The training corpus's speakers with their line counts, most lines first; as JSON, one object.
// Throws std::invalid_argument when the checkpoint does not store them.
void list_speakers(const LoadedModel& m, bool json);

// --speaker: the corpus's spelling of `name` (any case); a name the corpus lacks is kept, with a
// warning that suggests the nearest speaker (by typo or by first name).
std::string speaker_as_the_corpus_spells_it(const LoadedModel& m, const std::string& name);

}  // namespace dracarys
