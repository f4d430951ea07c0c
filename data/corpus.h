// Corpus readers: the show's dialogue in the forms people have it, normalised to one
// utterance per line ("speaker: text" when the source names the speaker).
//
// Formats, detected by extension and header:
//   .csv  script layout (Name, Sentence, Season, Episode) or subtitle layout (cap, music, ...)
//   .srt  SubRip subtitles (multi-line captions, <i> tags, BOM)
//   other plain UTF-8 text, one utterance per line, optionally "speaker: text"
// Folders are read recursively (files ending .csv, .srt or .txt, in name order).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dracarys {

// A line as the model reads it: "speaker: text", or just "speaker:" when the text is empty (a
// prompt that leaves the words to the model). The one place the speaker prefix is written.
std::string speaker_line(const std::string& speaker, const std::string& text);

// Where one corpus mixes lines with a speaker and lines without (the script with subtitles), a
// line without one starts with this mark where a name would stand: the model learns no made-up
// speaker for it, and every line it writes says which kind it is.
inline constexpr const char* kUnnamedMark = "\u00bb ";  // "» "

// The speaker and the text of such a line ("jon snow: Winter is coming." -> {"jon snow",
// "Winter is coming."}); a line without ':', or one that starts with kUnnamedMark, has no speaker.
std::pair<std::string, std::string> split_speaker_line(const std::string& line);

struct Utterance {
  std::string speaker;  // lower case as in the source; empty when unknown
  std::string text;     // whitespace collapsed, cues removed
  std::string episode;  // identity for the train/validation split, e.g. "S01E07" or a file name
  std::string story;    // lines with the same story follow one another: the episode, or a text file's path
                        // (its 25-line blocks are episodes for the split only)

  // The normalised line the model trains on.
  std::string line(bool with_speaker = true) const;
};

// Files larger than this are refused unless a caller allows more (--max-file-mb).
constexpr uint64_t kDefaultMaxFileBytes = uint64_t{1} << 30;

struct CorpusOptions {
  bool speaker_prefix = true;  // keep "speaker: " prefixes
  bool keep_cues = false;      // keep "( grunts )" and "[ ... ]" sound cues
  bool keep_lyrics = false;
  uint64_t max_file_bytes = kDefaultMaxFileBytes;  // larger files are refused
  uint64_t max_utterance_bytes = 65536;            // a longer utterance is an error naming its file
  std::vector<std::string> only_speakers;          // keep only these speakers' lines (empty: everyone)
  bool name_limit_options = false;  // refusals name --max-file-mb and --max-utterance-bytes (dracarys-train's)
};

struct CorpusStats {
  size_t files = 0, utterances = 0, characters = 0, episodes = 0;
  size_t dropped_empty = 0;   // nothing left after removing cues and whitespace
  size_t dropped_lyrics = 0;  // song lyrics (subtitle "music" rows)
  size_t cues_removed = 0;    // utterances that lost a sound cue
  struct File {
    std::string path;
    size_t utterances = 0, characters = 0;  // characters of text, before any --speakers filter
  };
  std::vector<File> mix;  // what each file read gave, in reading order
  std::string summary() const;
  std::string mix_summary() const;  // "a.csv 23,000 utterances, 1.4M characters (49%), ..."
};

struct Corpus {
  std::vector<Utterance> utterances;
  CorpusStats stats;
};

// Reads every path (file or folder). Throws DataError with a one-line message for a missing
// path, an unreadable file, non-UTF-8 bytes (file and line), a CSV without the expected
// columns, or a corpus with no utterances at all.
Corpus load_corpus(const std::vector<std::string>& paths, const CorpusOptions& opts = {});

// The utterances in one file's bytes, read as the file `name` would be (its extension picks the
// format). Throws DataError as load_corpus does. The fuzz targets call this.
std::vector<Utterance> parse_corpus_text(const std::string& name, std::string_view bytes,
                                         const CorpusOptions& opts = {});

// Lines as training reads them, in corpus order: each utterance's line, and an empty line where
// one story (an episode of the show, a text file) ends and the next begins. The empty line becomes a lone
// end-of-utterance token (see tokenize_lines), so a window that spans two episodes shows the model the scene break.
// `mark_unnamed`: lines without a speaker start with kUnnamedMark (see mixes_named_and_unnamed).
std::vector<std::string> training_lines(const std::vector<Utterance>& utterances, bool with_speaker,
                                        bool mark_unnamed = false);

// Whether some utterances name their speaker and some do not: then the unnamed are marked.
bool mixes_named_and_unnamed(const std::vector<Utterance>& utterances);

// How many utterances each named speaker has.
std::map<std::string, int64_t> count_speakers(const std::vector<Utterance>& utterances);

// "tyrion lannister, cersei lannister" -> {"tyrion lannister", "cersei lannister"}: split at
// commas, trimmed, empty entries dropped. Names are otherwise kept as written.
std::vector<std::string> split_speaker_list(const std::string& text);

// The embedded stand-in corpus (data/sample/), used when no --corpus is given.
std::string default_corpus_path();

// Reads a whole regular file of at most `max_bytes`. Throws DataError naming the path when it
// is missing, a folder, not a regular file (a FIFO would wait forever, /dev/zero never ends),
// larger than the limit, or unreadable.
// `limit_hint` ends the message of a file over the limit (say which option raises it).
std::string read_file(const std::string& path, uint64_t max_bytes = kDefaultMaxFileBytes,
                      const std::string& limit_hint = "");

}  // namespace dracarys
