// Corpus readers, the episode split, the tokenizer (through its plugin) and batching.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "data/batching.h"
#include "data/corpus.h"
#include "data/csv.h"
#include "data/errors.h"
#include "data/split.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "model/transformer.h"
#include "test_util.h"

using namespace dracarys;
using dracarys::testing::TempDir;

namespace {

std::vector<std::string> lines_of(const Corpus& c) {
  std::vector<std::string> out;
  for (const auto& u : c.utterances) out.push_back(u.line());
  return out;
}

std::string expect_data_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const DataError& e) {
    std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << "error should be one line: " << m;
    return m;
  }
  ADD_FAILURE() << "no DataError thrown";
  return "";
}

// Enough varied text to train a small tokenizer.
std::vector<std::string> sample_lines() {
  std::vector<std::string> lines;
  const char* who[] = {"cersei lannister", "jon snow", "arya stark", "tyrion lannister"};
  const char* what[] = {"When you play the game of thrones, you win or you die.",
                        "Winter is coming, and the night is dark and full of terrors.",
                        "A Lannister always pays his debts.",
                        "I drink and I know things.",
                        "The north remembers; not today.",
                        "Valar morghulis, all men must die."};
  for (int i = 0; i < 400; ++i) lines.push_back(std::string(who[i % 4]) + ": " + what[(i * 7 + i / 3) % 6]);
  return lines;
}

}  // namespace

TEST(Csv, QuotingDoubledQuotesNewlinesCrlfBom) {
  auto rows = parse_csv(
      "\xEF\xBB\xBF"
      "a,b,c\r\n1,\"x, y\",\"he said \"\"hi\"\"\"\r\n2,\"two\nlines\",\r\n",
      "t.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].fields, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"1", "x, y", "he said \"hi\""}));
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"2", "two\nlines", ""}));
  EXPECT_EQ(rows[2].line, 3u);
  auto m = expect_data_error([] { parse_csv("a,b\n1,\"open\n", "bad.csv"); });
  EXPECT_NE(m.find("bad.csv:2"), std::string::npos) << m;
}

TEST(Corpus, ScriptCsvWithSpeakersAndEpisodes) {
  TempDir d;
  auto p = d.write("script.csv",
                   "\"\",Release Date,Season,Episode,Episode Title,Name,Sentence\n"
                   "1,2011-04-17,Season 1,Episode 1,Winter Is Coming,jon snow,\"Go on, Father's watching.\"\n"
                   "2,2011-04-17,Season 1,Episode 1,Winter Is Coming,ned stark,\"  Winter   is coming. \"\n"
                   "3,2011-04-17,Season 1,Episode 2,The Kingsroad,arya stark,( laughs )\n");
  auto c = load_corpus({p});
  ASSERT_EQ(c.utterances.size(), 2u);
  EXPECT_EQ(c.utterances[0].line(), "jon snow: Go on, Father's watching.");
  EXPECT_EQ(c.utterances[1].line(), "ned stark: Winter is coming.");
  EXPECT_EQ(c.utterances[1].episode, "S1E1");
  EXPECT_EQ(c.stats.dropped_empty, 1u);
  EXPECT_EQ(c.stats.episodes, 1u);
  CorpusOptions no_speakers;
  no_speakers.speaker_prefix = false;
  EXPECT_EQ(load_corpus({p}, no_speakers).utterances[0].line(), "Go on, Father's watching.");
}

TEST(Corpus, SubtitleCsvDropsCuesAndLyricsAndJoinsCaptions) {
  TempDir d;
  auto p = d.write("subs.csv",
                   "name,season,episode,line,cap,music\n"
                   "Lord Snow,1,7,1,\"When you play the game of thrones, you win...\",FALSE\n"
                   "Lord Snow,1,7,2,or you die.,FALSE\n"
                   "Lord Snow,1,7,3,There is no middle ground.,FALSE\n"
                   "Lord Snow,1,7,4,( grunts ),FALSE\n"
                   "Lord Snow,1,7,5,The Rains of Castamere,TRUE\n"
                   "Lord Snow,1,8,1,[ door slams ] Who goes there?,FALSE\n");
  auto c = load_corpus({p});
  auto l = lines_of(c);
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0], "When you play the game of thrones, you win or you die.");
  EXPECT_EQ(l[1], "There is no middle ground.");
  EXPECT_EQ(l[2], "Who goes there?");
  EXPECT_EQ(c.stats.dropped_lyrics, 1u);
  EXPECT_EQ(c.stats.dropped_empty, 1u);
  EXPECT_EQ(c.stats.episodes, 2u);
}

TEST(Corpus, SrtMultilineTagsBomCrlf) {
  TempDir d;
  auto p = d.write(
      "ep.srt",
      "\xEF\xBB\xBF"
      "1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>The night is dark</i>\r\nand full of terrors.\r\n\r\n"
      "2\r\n00:00:03,000 --> 00:00:04,000\r\n( thunder )\r\n\r\n3\r\n00:00:05,000 --> 00:00:06,000\r\nHodor.\r\n");
  auto l = lines_of(load_corpus({p}));
  EXPECT_EQ(l, (std::vector<std::string>{"The night is dark and full of terrors.", "Hodor."}));
}

TEST(Corpus, PlainTextSpeakersFoldersAndSeveralPaths) {
  TempDir d;
  std::filesystem::create_directories(d.path() / "more");
  auto a = d.write(
      "a.txt", "arya stark: Not today.\r\nJust a line without a speaker\n\n  tyrion: I drink: and I know things.\n");
  d.write("more/b.txt", "hodor: Hodor.\n");
  d.write("more/ignored.bin", "xx");
  auto c = load_corpus({a, (d.path() / "more").string()});
  auto l = lines_of(c);
  EXPECT_EQ(l, (std::vector<std::string>{"arya stark: Not today.", "Just a line without a speaker",
                                         "tyrion: I drink: and I know things.", "hodor: Hodor."}));
  EXPECT_EQ(c.stats.files, 2u);
}

TEST(Corpus, BadInputGetsOneLineErrors) {
  TempDir d;
  auto m = expect_data_error([&] { load_corpus({d.file("missing.txt")}); });
  EXPECT_NE(m.find("no such file"), std::string::npos);
  auto empty = d.write("empty.txt", "\n \n");
  m = expect_data_error([&] { load_corpus({empty}); });
  EXPECT_NE(m.find("empty"), std::string::npos);
  auto cols = d.write("cols.csv", "who,said\nme,hi\n");
  m = expect_data_error([&] { load_corpus({cols}); });
  EXPECT_NE(m.find("found: who, said"), std::string::npos) << m;
  EXPECT_NE(m.find("Sentence"), std::string::npos) << m;
  auto latin1 = d.write("latin1.txt", "fine\nna\xEFve\n");
  m = expect_data_error([&] { load_corpus({latin1}); });
  EXPECT_NE(m.find("latin1.txt:2"), std::string::npos) << m;
  EXPECT_NE(m.find("UTF-8"), std::string::npos) << m;
  std::filesystem::create_directories(d.path() / "nothing");
  expect_data_error([&] { load_corpus({(d.path() / "nothing").string()}); });
  if (getuid() != 0) {  // root reads anything
    auto locked = d.write("locked.txt", "x\n");
    std::filesystem::permissions(locked, std::filesystem::perms::none);
    expect_data_error([&] { load_corpus({locked}); });
  }
}

TEST(Corpus, RealShowCorporaWhenPresent) {
  auto script = dracarys::testing::shared_data("got_script_s1-8.csv");
  auto subs = dracarys::testing::shared_data("got_subtitles_s1-7.csv");
  if (script.empty() || subs.empty()) GTEST_SKIP() << "../shared/data/got not present";
  auto c = load_corpus({script});
  EXPECT_GT(c.utterances.size(), 23000u);
  EXPECT_LE(c.utterances.size(), 23911u);
  EXPECT_EQ(c.stats.episodes, 73u);
  CorpusOptions keep;
  keep.keep_cues = true;
  auto s = load_corpus({subs}, keep);
  bool found = false;
  for (const auto& u : s.utterances)
    if (u.episode == "S1E7" && u.text.find("When you play the game of thrones, you win") != std::string::npos) {
      EXPECT_NE(u.text.find("or you die."), std::string::npos) << u.text;
      found = true;
    }
  EXPECT_TRUE(found);
  EXPECT_GT(s.stats.dropped_lyrics, 0u);
}

// A caption that stops mid-sentence (a comma, a word, a trailing "..." before lower case) runs
// on into the next; one that ends its sentence, or trails off before a new one, does not.
TEST(Corpus, CaptionsThatEndMidSentenceJoinIntoTheSentence) {
  TempDir d;
  auto p = d.write("subs.csv",
                   "name,season,episode,line,cap,music\n"
                   "W,1,1,1,\"One lot steals a goat from another lot,\",FALSE\n"
                   "W,1,1,2,before you know it they're ripping each other to pieces.,FALSE\n"
                   "W,1,1,3,I've never seen wildlings,FALSE\n"
                   "W,1,1,4,Do a thing like this. ( grunts ),FALSE\n"
                   "W,1,1,5,Wait...,FALSE\n"
                   "W,1,1,6,Who is there?,FALSE\n"
                   "W,1,1,7,\"\"\"Winter is coming,\"\" he said,\",FALSE\n"
                   "W,1,1,8,and then he died.,FALSE\n"
                   "W,1,1,9,It ends here,FALSE\n"
                   "W,1,2,1,in another episode.,FALSE\n"
                   "W,1,2,2,Stop.,FALSE\n"
                   "W,1,2,3,go on.,FALSE\n");
  EXPECT_EQ(lines_of(load_corpus({p})),
            (std::vector<std::string>{"One lot steals a goat from another lot, before you know it they're ripping "
                                      "each other to pieces.",
                                      "I've never seen wildlings Do a thing like this.", "Wait...", "Who is there?",
                                      "\"Winter is coming,\" he said, and then he died.", "It ends here",
                                      "in another episode.", "Stop.", "go on."}));
}

// The script (speakers) with subtitles (none): the unnamed lines start with the mark where a
// name would stand, so no line of theirs reads as a speaker's, even one with a colon in it;
// a corpus of one kind is not marked.
TEST(Corpus, LinesWithoutASpeakerNeverProduceASpeakerPrefix) {
  std::vector<Utterance> u = {{"jon snow", "Winter is coming.", "S1E1", "S1E1"},
                              {"", "Note: the king is dead.", "S1E1", "S1E1"},
                              {"", "Ser Davos: a smuggler.", "S1E2", "S1E2"}};
  ASSERT_TRUE(mixes_named_and_unnamed(u));
  const auto lines = training_lines(u, true, true);
  ASSERT_EQ(lines.size(), 4u);  // a scene break between the episodes
  EXPECT_EQ(lines[0], "jon snow: Winter is coming.");
  for (const auto& line : {lines[1], lines[3]}) {
    EXPECT_EQ(line.rfind(kUnnamedMark, 0), 0u) << line;
    EXPECT_EQ(split_speaker_line(line).first, "") << line;
  }
  EXPECT_EQ(split_speaker_line(lines[1]).second, "Note: the king is dead.");
  EXPECT_EQ(split_speaker_line(lines[0]), (std::pair<std::string, std::string>{"jon snow", "Winter is coming."}));
  std::vector<Utterance> unnamed(u.begin() + 1, u.end());
  EXPECT_FALSE(mixes_named_and_unnamed(unnamed));
  EXPECT_EQ(training_lines(unnamed, true, false)[0], "Note: the king is dead.");
  EXPECT_EQ(training_lines(u, false, true)[1], "Note: the king is dead.");  // --no-speakers: nothing to mark
}

// The script and the subtitles name their episodes alike ("S1E7"), so the split by episode
// keeps each episode of both files on one side; the start reports what each file gave.
TEST(Split, TwoCorporaNeverPutOneEpisodeOnBothSides) {
  TempDir d;
  std::string script = "\"\",Release Date,Season,Episode,Episode Title,Name,Sentence\n";
  std::string subs = "name,season,episode,line,cap,music\n";
  for (int e = 1; e <= 10; ++e)
    for (int i = 0; i < 6; ++i) {
      script += std::to_string(e * 10 + i) + ",2011-04-17,Season 1,Episode " + std::to_string(e) + ",T,jon snow,Line " +
                std::to_string(i) + " of episode " + std::to_string(e) + ".\n";
      subs += "T,1," + std::to_string(e) + "," + std::to_string(i) + ",Said " + std::to_string(i) + " in episode " +
              std::to_string(e) + ".,FALSE\n";
    }
  auto c = load_corpus({d.write("script.csv", script), d.write("subs.csv", subs)});
  ASSERT_EQ(c.stats.mix.size(), 2u);
  EXPECT_EQ(c.stats.mix[0].utterances, 60u);
  EXPECT_EQ(c.stats.mix[1].utterances, 60u);
  EXPECT_NE(c.stats.mix_summary().find("(50%)"), std::string::npos) << c.stats.mix_summary();
  EXPECT_EQ(c.stats.episodes, 10u);
  for (uint64_t seed : {1u, 2u, 3u}) {
    auto split = split_by_episode(c.utterances, 0.3, seed);
    std::set<std::string> train, validation;
    size_t named = 0, unnamed = 0;
    for (const auto& x : split.train) train.insert(x.episode);
    for (const auto& x : split.validation) validation.insert(x.episode), ++(x.speaker.empty() ? unnamed : named);
    for (const auto& e : validation) EXPECT_EQ(train.count(e), 0u) << e;
    EXPECT_EQ(named, unnamed);  // each held-out episode took its script lines and its captions
  }
}

TEST(Split, DisjointByEpisodeAndDeterministic) {
  std::vector<Utterance> u;
  for (int e = 0; e < 20; ++e)
    for (int i = 0; i < 10 + e; ++i)
      u.push_back({"s", "line " + std::to_string(i), "E" + std::to_string(e), "E" + std::to_string(e)});
  auto a = split_by_episode(u, 0.2, 42), b = split_by_episode(u, 0.2, 42), c = split_by_episode(u, 0.2, 43);
  std::set<std::string> tr, va;
  for (auto& x : a.train) tr.insert(x.episode);
  for (auto& x : a.validation) va.insert(x.episode);
  for (auto& e : va) EXPECT_EQ(tr.count(e), 0u) << e;
  EXPECT_EQ(a.train.size() + a.validation.size(), u.size());
  EXPECT_GE(a.validation.size(), static_cast<size_t>(0.2 * u.size()));
  EXPECT_EQ(a.validation_episodes, b.validation_episodes);
  EXPECT_NE(a.validation_episodes, c.validation_episodes);
  EXPECT_TRUE(split_by_episode(u, 0.0, 1).validation.empty());
  std::vector<Utterance> one(5, Utterance{"", "x", "E", "E"});
  EXPECT_THROW(split_by_episode(one, 0.1, 1), DataError);
}

TEST(Tokenizer, RoundTripUnseenCharactersAndLibTorchInOneProcess) {
  auto lines = sample_lines();
  TokenizerOptions o;
  o.vocab_size = 400;
  auto tok = Tokenizer::train(lines, o);
  EXPECT_EQ(tok.vocab_size(), 400);
  for (std::string s : {std::string("cersei lannister: When you play the game of thrones, you win or you die."),
                        std::string("  two  spaces, tabs\tand ünïcödé — “quotes” … 龍 🐉 0123")}) {
    auto ids = tok.encode(s);
    EXPECT_EQ(tok.decode(ids), s);
  }
  // The seen line compresses well below one token per byte.
  EXPECT_LT(tok.encode(lines[0]).size(), lines[0].size() / 2);
  // Characters per token add up to the text's characters.
  std::string s = "arya stark: Not today. 龍";
  double chars = 0;
  for (auto id : tok.encode(s)) chars += tok.chars_per_token()[id];
  EXPECT_DOUBLE_EQ(chars, static_cast<double>(count_chars(s)));
  // Serialised and loaded again: same ids. LibTorch works in the same process.
  auto again = Tokenizer::from_bytes(tok.bytes());
  EXPECT_EQ(again.encode(s), tok.encode(s));
  auto ids = tok.encode(s);
  auto t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()));
  ModelConfig mc;
  mc.layers = 1;
  mc.heads = 1;
  mc.d_model = 8;
  mc.d_ff = 8;
  mc.context = 64;
  mc.vocab_size = tok.vocab_size();
  Transformer m(mc);
  EXPECT_EQ(m->forward(t.unsqueeze(0)).size(2), 400);
  EXPECT_EQ(tok.decode({tok.eos_id()}), "\n");
  EXPECT_THROW(tok.encode("bad \xC3\x28 bytes"), DataError);
  // Exported .model file is what sentencepiece loads.
  TempDir d;
  tok.save(d.file("t.model"));
  EXPECT_EQ(Tokenizer::from_bytes(read_file(d.file("t.model"))).encode(s), tok.encode(s));
  EXPECT_THROW(Tokenizer::from_bytes("not a model"), DataError);
}

TEST(Tokenizer, CorpusTooSmallForVocabularyIsAClearError) {
  TokenizerOptions o;
  o.vocab_size = 5000;
  auto m = expect_data_error([&] { Tokenizer::train({"tiny corpus", "really small"}, o); });
  EXPECT_NE(m.find("--vocab-size 5000 is too large for this corpus"), std::string::npos) << m;
}

TEST(Batching, DeterministicPerStepAndEvalCoversStream) {
  TokenizerOptions o;
  o.vocab_size = 300;
  auto lines = sample_lines();
  auto tok = Tokenizer::train(lines, o);
  auto stream = tokenize_lines(tok, lines);
  TrainBatcher a(stream.ids, 16, 4, 7), b(stream.ids, 16, 4, 7), c(stream.ids, 16, 4, 8);
  auto x = a.batch(5), y = b.batch(5);
  EXPECT_TRUE(torch::equal(x.inputs, y.inputs));
  EXPECT_TRUE(torch::equal(x.inputs.narrow(1, 1, 15), x.targets.narrow(1, 0, 15)));
  EXPECT_FALSE(torch::equal(a.batch(6).inputs, x.inputs));
  EXPECT_FALSE(torch::equal(c.batch(5).inputs, x.inputs));
  // Rank r of a 2-rank run gets the r-th half of the batch one process with twice the batch gets.
  TrainBatcher twice(stream.ids, 16, 8, 7);
  auto global = twice.batch(5);
  EXPECT_TRUE(torch::equal(a.batch(5, 0).inputs, global.inputs.narrow(0, 0, 4)));
  EXPECT_TRUE(torch::equal(a.batch(5, 1).inputs, global.inputs.narrow(0, 4, 4)));
  auto eval = eval_batches(stream, tok.chars_per_token(), 16, 4);
  int64_t targets = 0;
  double chars = 0;
  for (auto& e : eval) targets += e.targets.numel(), chars += e.target_chars;
  EXPECT_EQ(targets, static_cast<int64_t>(stream.ids.size()) - 1);
  EXPECT_NEAR(chars, stream.chars - tok.chars_per_token()[stream.ids[0]], 1e-6);
  EXPECT_EQ(eval_batches(stream, tok.chars_per_token(), 16, 4, 6).size(), 2u);
  EXPECT_THROW(TrainBatcher(std::vector<TokenId>(10, 1), 16, 4, 1), DataError);
}
