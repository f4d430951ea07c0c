#include "data/corpus.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "data/csv.h"
#include "data/errors.h"
#include "data/text.h"

namespace fs = std::filesystem;

namespace dracarys {

std::string speaker_line(const std::string& speaker, const std::string& text) {
  return text.empty() ? speaker + ":" : speaker + ": " + text;
}

std::pair<std::string, std::string> split_speaker_line(const std::string& line) {
  const std::string_view mark = kUnnamedMark;
  if (line.compare(0, mark.size(), mark) == 0) return {"", line.substr(mark.size())};
  const auto colon = line.find(':');
  if (colon == std::string::npos) return {"", line};
  const size_t text = colon + 1 < line.size() && line[colon + 1] == ' ' ? colon + 2 : colon + 1;
  return {line.substr(0, colon), line.substr(text)};
}

std::string Utterance::line(bool with_speaker) const {
  return with_speaker && !speaker.empty() ? speaker_line(speaker, text) : text;
}

std::string CorpusStats::summary() const {
  std::ostringstream s;
  s << files << " file(s), " << utterances << " utterances, " << characters << " characters, " << episodes
    << " episode(s); dropped " << dropped_empty << " empty (cue-only) and " << dropped_lyrics
    << " song-lyric line(s); removed sound cues from " << cues_removed;
  return s.str();
}

std::string CorpusStats::mix_summary() const {
  size_t all = 0;
  for (const auto& f : mix) all += f.characters;
  std::ostringstream s;
  for (const auto& f : mix)
    s << (&f == &mix.front() ? "" : ", ") << f.path << " " << f.utterances << " utterances, " << f.characters
      << " characters (" << (all ? (200 * f.characters + all) / (2 * all) : 0) << "%)";
  return s.str();
}

std::string read_file(const std::string& path, uint64_t max_bytes, const std::string& limit_hint) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) throw DataError(path + ": no such file or folder");
    throw DataError(path + ": cannot be read (" + std::strerror(errno) + ")");
  }
  struct stat st {};
  std::string text;
  std::string problem;
  if (::fstat(fd, &st) != 0)
    problem = std::string("cannot be read (") + std::strerror(errno) + ")";
  else if (S_ISDIR(st.st_mode))
    problem = "is a folder, expected a file";
  else if (!S_ISREG(st.st_mode))
    problem = "is not a regular file (a device, FIFO or socket)";
  else if (static_cast<uint64_t>(st.st_size) > max_bytes)
    problem = "is " + std::to_string(st.st_size) + " bytes, more than the limit of " + std::to_string(max_bytes) +
              " bytes" + (limit_hint.empty() ? "" : " (" + limit_hint + ")");
  if (problem.empty()) {
    text.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < text.size()) {
      const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) problem = std::string("read error (") + std::strerror(errno) + ")";
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    text.resize(got);  // a file that shrank while being read gives what was there
  }
  ::close(fd);
  if (!problem.empty()) throw DataError(path + ": " + problem);
  return text;
}

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

size_t line_of(std::string_view text, size_t offset) {
  return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
}

void require_utf8(std::string_view text, const std::string& path) {
  size_t bad = 0;
  if (!valid_utf8(text, &bad))
    throw DataError(path + ":" + std::to_string(line_of(text, bad)) + ": bytes are not valid UTF-8 (at byte " +
                    std::to_string(bad) + ")");
}

// Adds one utterance after normalising it; counts what was dropped.
class Collector {
 public:
  Collector(Corpus& c, const CorpusOptions& o) : corpus_(c), opts_(o) {}
  // `story`: when empty, the episode.
  void add(std::string speaker, std::string_view raw, const std::string& episode, const std::string& story = "") {
    if (raw.size() > opts_.max_utterance_bytes)
      throw DataError(path_ + ": an utterance of " + std::to_string(raw.size()) + " bytes (in " + episode +
                      ") is longer than the limit of " + std::to_string(opts_.max_utterance_bytes) +
                      " bytes; is a quote left open?" +
                      (opts_.name_limit_options ? " (--max-utterance-bytes raises the limit)" : ""));
    std::string text = opts_.keep_cues ? std::string(raw) : strip_cues(raw);
    if (!opts_.keep_cues && text.size() != raw.size()) ++corpus_.stats.cues_removed;
    text = collapse_whitespace(text);
    if (text.empty()) {
      ++corpus_.stats.dropped_empty;
      return;
    }
    speaker = collapse_whitespace(speaker);
    corpus_.utterances.push_back({speaker, std::move(text), episode, story.empty() ? episode : story});
  }
  void lyric() { ++corpus_.stats.dropped_lyrics; }
  void set_file(const std::string& path) { path_ = path; }

 private:
  std::string path_;
  Corpus& corpus_;
  const CorpusOptions& opts_;
};

int column(const std::vector<std::string>& header, const std::string& name) {
  for (size_t i = 0; i < header.size(); ++i)
    if (lower(collapse_whitespace(header[i])) == lower(name)) return static_cast<int>(i);
  return -1;
}

// "Season 1" or "1" -> "1"
std::string number_in(const std::string& s) {
  std::string digits;
  for (char c : s)
    if (std::isdigit(static_cast<unsigned char>(c))) digits.push_back(c);
  return digits.empty() ? s : std::to_string(std::stoll(digits.substr(0, 9)));
}

std::string episode_id(const std::string& season, const std::string& episode) {
  return "S" + number_in(season) + "E" + number_in(episode);
}

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// Whether the sentence of a caption runs on into the next caption: it trails off ("you
// win...") into one that starts in lower case ("or you die."), or it stops without closing its
// sentence (after a comma or a word) and the next caption is the rest. Sound cues do not count.
bool sentence_goes_on(const std::string& caption, const std::string& next) {
  constexpr size_t kLongestSentence = 4096;  // bytes: past this, joining stops
  const std::string text = collapse_whitespace(strip_cues(caption)), after = collapse_whitespace(strip_cues(next));
  if (text.empty() || after.empty() || caption.size() > kLongestSentence) return false;
  const bool lower_next = std::islower(static_cast<unsigned char>(after[0])) != 0;
  std::string_view end = text;
  for (std::string_view closing : {"\"", "'", ")", "\u201d", "\u2019"})
    if (ends_with(end, closing)) end.remove_suffix(closing.size());
  if (end.empty()) return false;
  if (ends_with(end, "...") || ends_with(end, "\u2026") || ends_with(end, "-") || ends_with(end, "\u2014"))
    return lower_next;
  const char last = end.back();
  return last != '.' && last != '!' && last != '?';
}

void read_csv(const std::string& path, std::string_view text, Collector& out) {
  auto rows = parse_csv(text, path);
  if (rows.empty()) throw DataError(path + ": CSV file has no header row");
  const auto& header = rows[0].fields;
  auto field = [&](const CsvRow& r, int col) -> std::string {
    return col >= 0 && col < static_cast<int>(r.fields.size()) ? r.fields[col] : std::string();
  };
  int sentence = column(header, "Sentence"), name = column(header, "Name");
  int season = column(header, "Season"), episode = column(header, "Episode");
  int cap = column(header, "cap"), music = column(header, "music");
  if (sentence >= 0 && name >= 0 && season >= 0 && episode >= 0) {  // the script, with speakers
    for (size_t i = 1; i < rows.size(); ++i)
      out.add(field(rows[i], name), field(rows[i], sentence),
              episode_id(field(rows[i], season), field(rows[i], episode)));
    return;
  }
  if (cap >= 0 && season >= 0 && episode >= 0) {  // subtitles: captions, no speakers
    // A sentence split over captions ("you win..." / "or you die.") is joined back together
    // (sentence_goes_on says when).
    std::string pending, pending_ep;
    auto flush = [&] {
      if (!pending.empty()) out.add("", pending, pending_ep);
      pending.clear();
    };
    for (size_t i = 1; i < rows.size(); ++i) {
      const auto& r = rows[i];
      if (music >= 0 && lower(collapse_whitespace(field(r, music))) == "true") {
        flush();
        out.lyric();
        continue;
      }
      std::string ep = episode_id(field(r, season), field(r, episode));
      std::string c = collapse_whitespace(field(r, cap));
      if (!pending.empty() && ep == pending_ep && sentence_goes_on(pending, c)) {
        for (std::string_view dots : {"...", "\u2026"})
          if (ends_with(pending, dots)) pending.resize(pending.size() - dots.size());
        pending += " " + c;
      } else {
        flush();
        pending = c;
        pending_ep = ep;
      }
    }
    flush();
    return;
  }
  std::string found;
  for (const auto& h : header) found += (found.empty() ? "" : ", ") + h;
  throw DataError(path +
                  ": CSV columns not recognised; expected Name, Sentence, Season, Episode (script) or cap, "
                  "season, episode (subtitles); found: " +
                  found);
}

void read_srt(const std::string& path, std::string_view text, Collector& out) {
  // Blocks separated by blank lines: an index, a "00:00:01,000 --> 00:00:02,000" timing line,
  // then one or more lines of caption text.
  std::istringstream in{std::string(text)};
  std::string line, caption;
  bool in_text = false;
  auto flush = [&] {
    if (!caption.empty()) out.add("", strip_tags(caption), path);
    caption.clear();
    in_text = false;
  };
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (collapse_whitespace(line).empty()) {
      flush();
    } else if (line.find("-->") != std::string::npos && !in_text) {
      in_text = true;
    } else if (in_text) {
      caption += (caption.empty() ? "" : " ") + line;
    }  // else: the block's index number
  }
  flush();
}

void read_text(const std::string& path, std::string_view text, Collector& out) {
  // A text file has no episodes: blocks of 25 lines (about a scene) stand in for them in the split.
  std::istringstream in{std::string(text)};
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    std::string episode = path + "#" + std::to_string(n++ / 25);
    std::string speaker;
    std::string_view body = line;
    // "speaker: text" when the part before ": " looks like a name (letters, spaces, ' . -).
    size_t colon = line.find(": ");
    if (colon != std::string::npos && colon > 0 && colon <= 40) {
      bool name_like = std::all_of(line.begin(), line.begin() + colon, [](char c) {
        return std::isalpha(static_cast<unsigned char>(c)) || c == ' ' || c == '\'' || c == '.' || c == '-' ||
               (static_cast<unsigned char>(c) & 0x80);
      });
      if (name_like) {
        speaker = line.substr(0, colon);
        body = std::string_view(line).substr(colon + 2);
      }
    }
    out.add(speaker, body, episode, path);
  }
}

std::string extension(const fs::path& p) { return lower(p.extension().string()); }

// One file's text, in the format its name and first line say.
void read_text_of(const std::string& name, std::string_view bytes, Collector& out) {
  out.set_file(name);
  std::string_view view = strip_bom(bytes);
  require_utf8(view, name);
  const std::string ext = extension(name);
  const std::string first_line(view.substr(0, view.find('\n')));
  if (ext == ".csv")
    read_csv(name, view, out);
  else if (ext == ".srt" || (first_line.find_first_not_of("0123456789\r ") == std::string::npos &&
                             view.find("-->") != std::string::npos && !first_line.empty()))
    read_srt(name, view, out);
  else
    read_text(name, view, out);
}

}  // namespace

std::string default_corpus_path() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("DRACARYS_SAMPLE_CORPUS")) candidates.emplace_back(env);
  std::error_code ec;
  const auto exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  if (!ec) candidates.push_back(exe_dir / ".." / "share" / "dracarys" / "sample");  // install tree
  candidates.emplace_back(DRACARYS_SAMPLE_DIR);                                     // source tree
  for (const auto& c : candidates)
    if (fs::exists(c, ec)) return fs::weakly_canonical(c, ec).string();
  throw DataError("no --corpus given and the bundled sample corpus was not found (looked in " +
                  std::string(DRACARYS_SAMPLE_DIR) + "); set DRACARYS_SAMPLE_CORPUS or pass --corpus");
}

std::vector<Utterance> parse_corpus_text(const std::string& name, std::string_view bytes, const CorpusOptions& opts) {
  Corpus corpus;
  Collector out(corpus, opts);
  read_text_of(name, bytes, out);
  return corpus.utterances;
}

namespace {

// The speaker filter (--speakers): keeps the named speakers' utterances, in order.
void keep_only_speakers(std::vector<Utterance>& utterances, const std::vector<std::string>& names) {
  const std::set<std::string> wanted(names.begin(), names.end());
  std::set<std::string> found;
  std::vector<Utterance> kept;
  for (auto& u : utterances)
    if (wanted.count(u.speaker)) found.insert(u.speaker), kept.push_back(std::move(u));
  if (kept.empty())
    throw DataError("none of the speakers asked for (" + names.front() + (names.size() > 1 ? ", ..." : "") +
                    ") has a line in the corpus; names must be written as the corpus writes them");
  for (const auto& name : names)
    if (!found.count(name)) throw DataError("speaker '" + name + "' has no line in the corpus");
  utterances = std::move(kept);
}

}  // namespace

bool mixes_named_and_unnamed(const std::vector<Utterance>& utterances) {
  bool named = false, unnamed = false;
  for (const auto& u : utterances) (u.speaker.empty() ? unnamed : named) = true;
  return named && unnamed;
}

std::vector<std::string> training_lines(const std::vector<Utterance>& utterances, bool with_speaker,
                                        bool mark_unnamed) {
  std::vector<std::string> lines;
  lines.reserve(utterances.size() + utterances.size() / 64);
  for (size_t i = 0; i < utterances.size(); ++i) {
    const auto& u = utterances[i];
    if (i > 0 && u.story != utterances[i - 1].story) lines.emplace_back();  // scene break
    lines.push_back(with_speaker && mark_unnamed && u.speaker.empty() ? kUnnamedMark + u.text : u.line(with_speaker));
  }
  return lines;
}

std::map<std::string, int64_t> count_speakers(const std::vector<Utterance>& utterances) {
  std::map<std::string, int64_t> counts;
  for (const auto& u : utterances)
    if (!u.speaker.empty()) ++counts[u.speaker];
  return counts;
}

std::vector<std::string> split_speaker_list(const std::string& text) {
  std::vector<std::string> names;
  std::istringstream in(text);
  for (std::string name; std::getline(in, name, ',');) {
    const auto first = name.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    names.push_back(name.substr(first, name.find_last_not_of(" \t") - first + 1));
  }
  return names;
}

Corpus load_corpus(const std::vector<std::string>& paths, const CorpusOptions& opts) {
  if (paths.empty()) throw DataError("no corpus given");
  Corpus corpus;
  Collector out(corpus, opts);
  for (const auto& path : paths) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw DataError(path + ": no such file or folder");
    std::vector<fs::path> files;
    if (fs::is_directory(path, ec)) {
      for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        const auto ext = extension(it->path());
        if (it->is_regular_file(ec) && (ext == ".csv" || ext == ".srt" || ext == ".txt")) files.push_back(it->path());
      }
      if (ec) throw DataError(path + ": cannot list folder: " + ec.message());
      std::sort(files.begin(), files.end());
      if (files.empty()) throw DataError(path + ": folder holds no .csv, .srt or .txt files");
    } else {
      files.push_back(path);
    }
    for (const auto& f : files) {
      const size_t before = corpus.utterances.size();
      read_text_of(f.string(),
                   read_file(f.string(), opts.max_file_bytes, opts.name_limit_options ? "--max-file-mb raises it" : ""),
                   out);
      ++corpus.stats.files;
      CorpusStats::File share{f.string(), corpus.utterances.size() - before, 0};
      for (size_t i = before; i < corpus.utterances.size(); ++i)
        share.characters += count_chars(corpus.utterances[i].text);
      corpus.stats.mix.push_back(share);
    }
  }
  if (corpus.utterances.empty())
    throw DataError("corpus is empty: no utterances in " + paths.front() +
                    (paths.size() > 1 ? " and the other paths" : ""));
  if (!opts.only_speakers.empty()) keep_only_speakers(corpus.utterances, opts.only_speakers);
  std::set<std::string> episodes;
  for (auto& u : corpus.utterances) {
    if (!opts.speaker_prefix) u.speaker.clear();
    episodes.insert(u.episode);
    corpus.stats.characters += count_chars(u.line(opts.speaker_prefix)) + 1;  // + the line end
  }
  corpus.stats.utterances = corpus.utterances.size();
  corpus.stats.episodes = episodes.size();
  return corpus;
}

}  // namespace dracarys
