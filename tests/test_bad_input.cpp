// Every option is checked and every input bounded: NaN, infinities, negative and absurd values,
// FIFOs and devices as corpora, oversized files and utterances, unknown --config keys, bad
// piped lines and control characters headed for a terminal. Each gets one line in our words.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "cli/unknown_options.h"
#include "cli_util.h"
#include "data/text.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

// One tiny checkpoint shared by this file's inference tests.
class BadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    corpus_ = tiny_corpus(*dir_);
    ckpt_ = dir_->file("m.pt");
    auto r = train_once(*dir_, corpus_, kTiny + kVocab + " --val-share 0 --max-steps 60", ckpt_);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string train() {
    return kTrain + " --corpus " + corpus_ + kTiny + kVocab + " --val-share 0 --max-steps 1 --out " +
           dir_->file("o.pt");
  }
  static std::string infer() { return kInfer + " -c " + ckpt_ + " --threads 1"; }

  static TempDir* dir_;
  static std::string corpus_, ckpt_;
};
TempDir* BadInput::dir_ = nullptr;
std::string BadInput::corpus_, BadInput::ckpt_;

}  // namespace

TEST_F(BadInput, TrainingOptionsOutOfRangeAreRefusedReadably) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --time-budget nan", "bad duration"},
      {" --time-budget 1e300h", "longer than a year"},
      {" --min-lr nan", "--min-lr must be a number in [0, 10], got nan"},
      {" --min-lr 0.5", "--min-lr (0.5) must not be above --lr (0.002)"},
      {" --patience -1", "--patience must be a whole number from 0"},
      {" --batch-size many", "--batch-size"},
      {" --grad-clip nan", "--grad-clip must be a number in [0, 1e+06], got nan"},
      {" --weight-decay inf", "--weight-decay must be a number in [0, 100], got inf"},
      {" --lr 1e300", "--lr must be a number in (0, 10], got 1e+300"},
      {" --val-share nan", "--val-share must be a number in [0, 0.9], got nan"},
      {" --batch-size 0", "--batch-size must be a whole number from 1 to 65536, got 0"},
      {" --eval-every 0", "--eval-every must be a whole number from 1"},
      {" --max-steps -5", "--max-steps must be a whole number from 0"},
      {" --intra-op-threads 100000", "--intra-op-threads must be a whole number from 1 to 256, got 100000"},
      {" --threads -1", "--threads must be a whole number from 0 to 256, got -1"},
      {" --dropout nan", "dropout must be in [0, 1)"},
      {" --context 100000", "context is 100000, above the limit of 16384"},
      {" --max-file-mb 0", "--max-file-mb must be a whole number from 1"},
      {" --batch-size 65536 --context 8192", "GB, more than this machine's"},
  };
  const std::string base = kTrain + " --corpus " + corpus_ + " --out " + dir_->file("o.pt");
  for (const auto& [flags, needle] : cases) {
    auto r = run(*dir_, base + (flags.find("--max-steps") == std::string::npos ? " --max-steps 1" : "") + flags);
    expect_one_line_error(r, needle);
    EXPECT_EQ(r.err.find("179769"), std::string::npos) << "a 300-digit limit: " << r.err;
  }
  expect_one_line_error(run(*dir_, kTrain + " --benchmark --benchmark-windows 0 --threads 1"),
                        "--benchmark-windows must be a whole number from 1 to 1000, got 0");
}

TEST_F(BadInput, InferenceOptionsOutOfRangeAreRefusedReadably) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --temperature nan", "--temperature must be a number in (0, 100], got nan"},
      {" --temperature inf", "--temperature must be a number in (0, 100], got inf"},
      {" --temperature 0", "--temperature must be a number in (0, 100], got 0"},
      {" --top-p nan", "--top-p must be a number in (0, 1], got nan"},
      {" --top-k -1", "--top-k must be a whole number from 0"},
      {" -n 0", "--max-new-tokens must be a whole number from 1"},
      {" --num-samples 0", "--num-samples must be a whole number from 1 to 1000, got 0"},
      {" --intra-op-threads 100000", "--intra-op-threads must be a whole number from 1 to 256"},
  };
  for (const auto& [flags, needle] : cases)
    expect_one_line_error(run(*dir_, infer() + " -p 'jon snow:'" + flags), needle);
}

TEST_F(BadInput, CorpusFilesMustBeRegularAndBounded) {
  // A FIFO would wait for a writer forever, /dev/zero would be read until memory ran out.
  const auto fifo = dir_->file("corpus.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  const std::string rest = kTiny + kVocab + " --val-share 0 --max-steps 1 --out " + dir_->file("o.pt");
  expect_one_line_error(run(*dir_, "timeout 60 " + kTrain + " --corpus " + fifo + rest), "is not a regular file");
  expect_one_line_error(run(*dir_, "timeout 60 " + kTrain + " --corpus /dev/zero" + rest), "is not a regular file");
  expect_one_line_error(run(*dir_, "timeout 60 " + kInfer + " -c " + ckpt_ + " --score /dev/zero"),
                        "is not a regular file");
  expect_one_line_error(run(*dir_, "timeout 60 " + kInfer + " -c " + fifo), "is not a regular file");
  // Over the size limit.
  const auto big = dir_->write("big.txt", std::string(2u << 20, 'a') + "\n");
  expect_one_line_error(run(*dir_, kTrain + " --corpus " + big + " --max-file-mb 1" + rest),
                        "more than the limit of 1048576 bytes (--max-file-mb raises it)");
  // One enormous utterance (a 50 MB field took 10 GB to tokenise): refused by its length.
  const auto long_line = dir_->write("long.txt", slurp(corpus_) + "jon snow: " + std::string(70000, 'a') + "\n");
  expect_one_line_error(run(*dir_, kTrain + " --corpus " + long_line + rest),
                        "an utterance of 70000 bytes (in " + long_line + "#1) is longer than the limit of 65536 bytes");
  auto r = run(*dir_, kTrain + " --corpus " + long_line + " --max-utterance-bytes 80000" + rest);
  EXPECT_EQ(r.code, 0) << r.err;
  // dracarys-infer has no such option, so it does not suggest one.
  r = run(*dir_, kInfer + " -c " + ckpt_ + " --score " + long_line);
  expect_one_line_error(r, "is longer than the limit of 65536 bytes; is a quote left open?");
  EXPECT_EQ(r.err.find("--max-utterance-bytes"), std::string::npos) << r.err;
}

TEST_F(BadInput, UnknownConfigKeysSuggestTheNearestOption) {
  const auto typo = dir_->write("typo.toml", "lr = 0.001\nbatchsize = 4\n");
  expect_one_line_error(run(*dir_, train() + " --config " + typo),
                        "unknown key 'batchsize'; did you mean 'batch-size'?");
  const auto underscore = dir_->write("underscore.toml", "max_steps = 4\n");
  expect_one_line_error(run(*dir_, train() + " --config " + underscore), "did you mean 'max-steps'?");
  const auto section = dir_->write("section.toml", "[data]\nval-share = 0.2\n");
  expect_one_line_error(run(*dir_, train() + " --config " + section), "is inside a section");
  const auto twice = dir_->write("twice.toml", "lr = 0.001\nbatch-size = 4\nlr = 0.5\n");
  expect_one_line_error(run(*dir_, train() + " --config " + twice), "key 'lr' is given twice; keep one");
  const auto good = dir_->write("good.toml", "lr = 0.001\nbatch-size = 4\n");
  auto r = run(*dir_, train() + " --config " + good);
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(BadInput, ConfigFilesAreBoundedAndRegular) {
  // /dev/zero was read for 2.25 GB and then ignored; a FIFO waited forever.
  expect_one_line_error(run(*dir_, "timeout 60 " + train() + " --config /dev/zero"), "is not a regular file");
  const auto fifo = dir_->file("config.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  expect_one_line_error(run(*dir_, "timeout 60 " + train() + " --config=" + fifo), "is not a regular file");
  const auto big = dir_->write("big.toml", "# " + std::string(2u << 20, 'x') + "\n");
  expect_one_line_error(run(*dir_, train() + " --config " + big), "more than the limit of 1048576 bytes");
  // A huge sample prompt (3 MB took 921 MB) is refused by its length.
  const auto prompt = dir_->write("prompt.toml", "prompt = \"" + std::string(5000, 'a') + "\"\n");
  expect_one_line_error(run(*dir_, train() + " --config " + prompt), "--prompt is 5000 bytes");
}

TEST_F(BadInput, CommandLineErrorsAreOurWordsAndExitOne) {
  auto r = run(*dir_, kInfer + " -c " + ckpt_ + " -c " + ckpt_ + " -p x");
  expect_one_line_error(r, "--checkpoint was given 2 values; it takes at most 1");
  EXPECT_EQ(r.code, 1);
  r = run(*dir_, kInfer + " -p x");
  expect_one_line_error(r, "--checkpoint is required");
  EXPECT_EQ(r.code, 1);
  r = run(*dir_, kTrain + " --layers four");
  expect_one_line_error(r, "--layers: 'four' is not a value it takes");
  EXPECT_EQ(r.code, 1);
  r = run(*dir_, kInfer + " -c " + ckpt_ + " stray words");
  expect_one_line_error(r, "unknown argument(s)");
  EXPECT_EQ(r.code, 1);
  for (const char* raw : {"At Most", "Could not convert", "The following argument"})
    EXPECT_EQ(r.err.find(raw), std::string::npos) << r.err;
}

TEST_F(BadInput, UnknownOptionsAreListedInOrderWithTheNearestName) {
  auto r = run(*dir_, kTrain + " --batch-sise 8 --no-such-thing");
  expect_one_line_error(
      r, "unknown argument(s): --batch-sise 8 --no-such-thing; --batch-sise: did you mean --batch-size?");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.find("quotes"), std::string::npos) << "no value held a space: " << r.err;
  EXPECT_EQ(r.err.find("--no-such-thing: did you mean"), std::string::npos) << r.err;
  // A second word of an unquoted value is what the hint is for.
  r = run(*dir_, kInfer + " -c " + ckpt_ + " --speaker jon snow -p x");
  expect_one_line_error(r, "unknown argument(s): snow (a value with spaces needs quotes)");
}

TEST_F(BadInput, RemovedOptionsSayWhatReplacedThem) {
  for (const auto& removed : replaced_options()) {
    const auto r = run(*dir_, kTrain + " " + removed.flag + " 20");
    expect_one_line_error(r, std::string(removed.flag) + " was replaced by " + removed.replaced);
    EXPECT_EQ(r.code, 1);
  }
  expect_one_line_error(run(*dir_, kTrain + " --warmup-steps=20"),
                        "--warmup-steps was replaced by --warmup, a share of the schedule (e.g. --warmup 0.05)");
}

TEST_F(BadInput, OneBadPipedLineIsSkippedAndTheRestAnswered) {
  const auto input = dir_->write("in.txt", "jon snow: I know\n\xff\xfe broken\narya stark: Not\n");
  auto r = run(*dir_, infer() + " --greedy -n 5 --json < " + input);
  EXPECT_EQ(r.code, 1) << "a skipped line makes the exit code say so";
  EXPECT_NE(r.err.find("input line 2: prompt is not valid UTF-8; skipped"), std::string::npos) << r.err;
  int answers = 0;
  std::istringstream out(r.out);
  for (std::string line; std::getline(out, line);) answers += nlohmann::json::parse(line).contains("completion");
  EXPECT_EQ(answers, 2) << r.out;
}

TEST_F(BadInput, ControlCharactersNeverReachATerminalRaw) {
  const std::string prompt = "jon snow: \x1b[2J\x07 gone";
  const auto screen =
      run_on_terminal({kInfer, "-c", ckpt_, "--threads", "1", "--greedy", "-n", "4", "-p", prompt}, {}, true).screen;
  EXPECT_EQ(screen.find('\x1b'), std::string::npos) << screen;
  EXPECT_EQ(screen.find('\x07'), std::string::npos) << screen;
  EXPECT_NE(screen.find("jon snow: \\x1b[2J\\x07 gone"), std::string::npos) << screen;
  // --json keeps the text exact (JSON escapes it its own way).
  auto r = run(*dir_, infer() + " --greedy -n 4 --json -p \"$(printf 'jon snow: \\033[2J gone')\"");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["prompt"].get<std::string>(), "jon snow: \x1b[2J gone");
}

TEST(EscapeControl, ShowsControlsAndBadBytesKeepsText) {
  EXPECT_EQ(escape_control("plain, ünïcödé ✓\ttab"), "plain, ünïcödé ✓\ttab");
  EXPECT_EQ(escape_control("a\x1b[31mb\x7f"), "a\\x1b[31mb\\x7f");
  EXPECT_EQ(escape_control("line\nnext"), "line\\x0anext");
  EXPECT_EQ(escape_control("line\nnext", /*keep_newlines=*/true), "line\nnext");
  EXPECT_EQ(escape_control("c1 \xc2\x9b here"), "c1 \\u009b here");
  EXPECT_EQ(escape_control("cut \xe2\x9c"), "cut \\xe2\\x9c");
}
