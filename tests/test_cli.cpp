// End to end: dracarys-train and dracarys-infer as a user runs them, on tiny corpora the
// tests write themselves.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "cli_util.h"
#include "data/corpus.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

nlohmann::json last_metrics(const std::string& ckpt) {
  std::ifstream in(ckpt + ".metrics.jsonl");
  std::string line, last;
  while (std::getline(in, line)) last = line;
  return nlohmann::json::parse(last);
}

}  // namespace

TEST(Train, FewStepsLowerLossAndWriteLoadableCheckpoint) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  auto r = run(d, kTrain + " --corpus " + corpus + " --out " + d.file("m.pt") + kTiny + kVocab +
                      " --max-steps 40 --eval-every 20 --val-share 0 --dropout 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("sample: " + kPrompt), std::string::npos) << r.err;
  std::ifstream metrics(d.file("m.pt.metrics.jsonl"));
  std::vector<nlohmann::json> rows;
  for (std::string l; std::getline(metrics, l);) rows.push_back(nlohmann::json::parse(l));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_LT(rows[1]["train_loss"].get<double>(), rows[0]["train_loss"].get<double>());
  EXPECT_LT(rows[1]["train_loss"].get<double>(), std::log(400.0) - 1.0);
  auto ckpt = load_checkpoint(d.file("m.pt"));
  EXPECT_EQ(ckpt.config.d_model, 64);
  EXPECT_FALSE(ckpt.optimizer.empty());
  EXPECT_EQ(nlohmann::json::parse(ckpt.meta_json)["state"]["step"], 40);
}

TEST(Train, BadResumeInputIsOneLineError) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  const std::string common = " --corpus " + corpus + kTiny + kVocab + " --val-share 0";
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 2 --out " + d.file("half.pt")).code, 0);
  // Shape flags are refused on resume; a missing or corrupt resume file is a clear error.
  expect_one_line_error(run(d, kTrain + " --resume " + d.file("half.pt") + " --d-model 32 --max-steps 40"),
                        "--d-model 32 contradicts");
  expect_one_line_error(run(d, kTrain + " --resume " + d.file("nothing.pt")), "checkpoint not found");
  auto bytes = slurp(d.file("half.pt"));
  d.write("trunc.pt", bytes.substr(0, bytes.size() / 2));
  expect_one_line_error(run(d, kTrain + " --resume " + d.file("trunc.pt")), "corrupted or truncated");
  bytes[bytes.size() / 2] ^= 0x20;
  d.write("flip.pt", bytes);
  expect_one_line_error(run(d, kTrain + " --resume " + d.file("flip.pt")), "corrupted");
}

TEST(Train, SigintMidRunSavesValidCheckpoint) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  const std::string out = d.file("int.pt");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
    execl(kTrain.c_str(), kTrain.c_str(), "--corpus", corpus.c_str(), "--out", out.c_str(), "--max-steps", "1000000",
          "--eval-every", "1000000", "--val-share", "0", "--layers", "1", "--d-model", "32", "--d-ff", "64", "--heads",
          "2", "--context", "32", "--vocab-size", "300", "--threads", "1", nullptr);
    _exit(127);
  }
  // Let it train for a moment, then interrupt.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto ckpt = load_checkpoint(out);
  EXPECT_GT(nlohmann::json::parse(ckpt.meta_json)["state"]["step"].get<int64_t>(), 0);
}

TEST(Train, BadInputIsOneLineError) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  const std::string base = kTrain + " --corpus " + corpus + " --val-share 0 --max-steps 1";
  expect_one_line_error(run(d, kTrain + " --corpus " + d.file("missing.txt") + " --max-steps 1"), "no such file");
  expect_one_line_error(run(d, base + " --heads 3"), "divisible by heads");
  expect_one_line_error(run(d, base + " --out /nonexistent/dir/x.pt"), "does not exist");
  expect_one_line_error(run(d, base + " --vocab-size 20000"), "--vocab-size 20000 is too large for this corpus");
  // 256 byte pieces + 2 special tokens + the corpus's 31 distinct characters
  expect_one_line_error(run(d, base + " --vocab-size 270"),
                        "--vocab-size 270 is too small for this corpus: it needs at least 289 (256 byte pieces + 2 "
                        "special tokens + 31 characters");
  expect_one_line_error(run(d, base + kVocab + " --context 4096 --batch-size 1"), "too small");
  auto scene = d.write("scene.txt", "jon snow: One scene.\nsansa stark: One episode.\n");
  expect_one_line_error(run(d, kTrain + " --corpus " + scene + " --max-steps 1"), "cannot split one episode");
  expect_one_line_error(run(d, base + " --lr -1"), "--lr must be a number in (0, 10], got -1");
  expect_one_line_error(run(d, kTrain + " --corpus " + corpus + " --time-budget 10parsecs"), "bad duration");
  // Weights that load (finite, within 1e6) but overflow in the forward pass make the loss NaN:
  // stop, keep the last good checkpoint. (relu2 squares the feed-forward's 1e6-scale sums.)
  ASSERT_EQ(run(d, kTrain + " --corpus " + corpus + kTiny + kVocab +
                       " --activation relu2 --max-steps 10 --val-share 0 --out " + d.file("nan.pt"))
                .code,
            0);
  {
    auto ckpt = load_checkpoint(d.file("nan.pt"));
    auto model = load_model(ckpt, torch::kCPU);
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters())
      if (p.key().find(".ff.") != std::string::npos) p.value().fill_(1e6f);
    ckpt.model = module_bytes(*model);
    save_checkpoint(d.file("nan.pt"), ckpt);
  }
  auto r = run(d, kTrain + " --resume " + d.file("nan.pt") + " --max-steps 200");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("loss became"), std::string::npos) << r.err;
  EXPECT_EQ(nlohmann::json::parse(load_checkpoint(d.file("nan.pt")).meta_json)["state"]["step"], 10);
}

// One trained model shared by the inference tests of this process.
class Infer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    corpus_ = tiny_corpus(*dir_);
    ckpt_ = dir_->file("m.pt");
    auto r = train_once(*dir_, corpus_, kTiny + kVocab + " --max-steps 400 --eval-every 400 --val-share 0 --dropout 0",
                        ckpt_);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  Result infer(const std::string& args) { return run(*dir_, kInfer + " -c " + ckpt_ + " " + args); }
  static TempDir* dir_;
  static std::string corpus_, ckpt_;
};
TempDir* Infer::dir_ = nullptr;
std::string Infer::corpus_, Infer::ckpt_;

TEST_F(Infer, MemorisedLineCompletesGreedilyAndStopsAtEndOfUtterance) {
  auto r = infer("-p \"" + kPrompt + "\" --greedy");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, kLine + "\n");
  auto j = nlohmann::json::parse(infer("-p \"" + kPrompt + "\" --greedy --json -n 50").out);
  EXPECT_EQ(j["completion"], " win or you die.");
  EXPECT_LT(j["generated_tokens"].get<int>(), 50);  // stopped at the end of the utterance
  EXPECT_GT(j["gen_tokens_per_s"].get<double>(), 0);
}

TEST_F(Infer, ATerminalGetsRealLineBreaks) {
  // The exact bytes a terminal receives: the line, then the terminal's own line end.
  const auto session = run_on_terminal({kInfer, "-c", ckpt_, "--greedy", "--threads", "1", "-p", kPrompt}, {},
                                       /*hide_log=*/true);
  EXPECT_TRUE(WIFEXITED(session.status) && WEXITSTATUS(session.status) == 0) << session.screen;
  EXPECT_EQ(session.screen, kLine + "\r\n");
}

TEST_F(Infer, NoStopBreaksTheLineWhereAnUtteranceEnds) {
  // The tiny corpus follows the seed line with "arya stark: Not today." on the next line.
  auto r = infer("-p \"" + kPrompt + "\" --greedy --no-stop -n 30");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, kLine.size() + 1), kLine + "\n") << r.out;
  EXPECT_GT(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  auto j = nlohmann::json::parse(infer("-p \"" + kPrompt + "\" --greedy --no-stop -n 30 --json").out);
  EXPECT_EQ(j["completion"].get<std::string>().substr(0, 17), " win or you die.\n");
}

TEST_F(Infer, CachedEqualsUncachedSeedsRepeatTopK1IsGreedy) {
  auto a = infer("-p \"hodor:\" --greedy --no-stop -n 150");  // past the 64-token context
  auto b = infer("-p \"hodor:\" --greedy --no-stop -n 60 --no-cache");
  auto c = infer("-p \"hodor:\" --greedy --no-stop -n 60");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(b.out, c.out);
  EXPECT_GT(a.out.size(), c.out.size());
  auto s1 = infer("-p \"arya stark:\" --seed 5 --temperature 1.5 -n 40 --no-stop");
  auto s2 = infer("-p \"arya stark:\" --seed 5 --temperature 1.5 -n 40 --no-stop");
  EXPECT_EQ(s1.out, s2.out);
  EXPECT_EQ(infer("-p \"jon snow:\" --top-k 1 --temperature 3 -n 30").out,
            infer("-p \"jon snow:\" --greedy -n 30").out);
}

TEST_F(Infer, SpeakerPipedInputAndPseudoTerminal) {
  auto r = run(*dir_, "printf 'When you play the game of thrones, you\\nWinter\\n' | " + kInfer + " -c " + ckpt_ +
                          " --speaker \"cersei lannister\" --greedy");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, kLine.size() + 1), kLine + "\n");
  EXPECT_NE(r.out.find("cersei lannister: Winter"), std::string::npos);

  // Interactive: a real pseudo-terminal, one line typed, then Ctrl-D.
  const auto session =
      run_on_terminal({kInfer, "-c", ckpt_, "--greedy"}, {{"", kPrompt + "\n"}, {"win or you die.", "\x04"}});
  EXPECT_EQ(session.typed, 2u) << session.screen;
  EXPECT_TRUE(WIFEXITED(session.status) && WEXITSTATUS(session.status) == 0) << session.screen;
}

TEST_F(Infer, ScoreAgreesWithTrainingEvaluation) {
  // Two files of one episode each (a text file's episodes are 25-line scenes); validation
  // takes one of them whole. The vocabulary shrinks to what the small text supports.
  TempDir d;
  auto a = d.write("a.txt", slurp(tiny_corpus(d)).substr(0, 900));
  std::string more;
  for (int i = 0; i < 20; ++i)
    more += "bran stark: The three-eyed raven sees " + std::to_string(i * 37) + " ravens!?\n";
  auto b = d.write("b.txt", more);
  auto r = run(d, kTrain + " --corpus " + a + " " + b + " --out " + d.file("v.pt") + kTiny +
                      " --max-steps 20 --eval-every 20 --val-share 0.3 --eval-windows 0 --dropout 0");
  ASSERT_EQ(r.code, 0) << r.err;
  const double val_loss = last_metrics(d.file("v.pt"))["val_loss"].get<double>();
  const double val_bpc = last_metrics(d.file("v.pt"))["val_bpc"].get<double>();
  bool matched = false;
  for (const auto& f : {a, b}) {
    auto s = run(d, kInfer + " -c " + d.file("v.pt") + " --score " + f + " --json");
    ASSERT_EQ(s.code, 0) << s.err;
    auto j = nlohmann::json::parse(s.out);
    if (std::abs(j["loss"].get<double>() - val_loss) < 1e-4) {
      EXPECT_NEAR(j["bits_per_char"].get<double>(), val_bpc, 1e-4);
      matched = true;
    }
  }
  EXPECT_TRUE(matched) << "no file scored like the validation set (" << val_loss << ")";
}

TEST_F(Infer, ScoreReadsStandardInputAndScoresEachLine) {
  const auto file = run(*dir_, kInfer + " -c " + ckpt_ + " --score " + corpus_ + " --json");
  ASSERT_EQ(file.code, 0) << file.err;
  const auto total = nlohmann::json::parse(file.out);
  for (const std::string stdin_name : {"-", "/dev/stdin"}) {
    auto piped = run(*dir_, "cat " + corpus_ + " | " + kInfer + " -c " + ckpt_ + " --score " + stdin_name + " --json");
    ASSERT_EQ(piped.code, 0) << piped.err;
    auto j = nlohmann::json::parse(piped.out);
    EXPECT_EQ(j["loss"], total["loss"]);
    EXPECT_EQ(j["tokens"], total["tokens"]);
    EXPECT_EQ(j["file"], "-");
  }
  // --score-lines: one object per line, in order, then the total.
  auto r = run(*dir_, "head -n 3 " + corpus_ + " | " + kInfer + " -c " + ckpt_ + " --score - --score-lines --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<nlohmann::json> rows;
  std::istringstream out(r.out);
  for (std::string l; std::getline(out, l);) rows.push_back(nlohmann::json::parse(l));
  ASSERT_EQ(rows.size(), 4u) << r.out;
  std::istringstream corpus(slurp(corpus_));
  for (int i = 0; i < 3; ++i) {
    std::string line;
    std::getline(corpus, line);
    EXPECT_EQ(rows[i]["line"], i + 1);
    EXPECT_EQ(rows[i]["text"], line);
    EXPECT_GT(rows[i]["tokens"].get<int>(), 1);
    EXPECT_GT(rows[i]["bits_per_char"].get<double>(), 0);
  }
  EXPECT_TRUE(rows[3].contains("perplexity"));
  // The memorised seed line scores far better than a line the model never saw.
  auto seen = run(*dir_, "echo '" + kLine + "' | " + kInfer + " -c " + ckpt_ + " --score - --score-lines");
  auto unseen = run(*dir_, "echo 'hodor: Kittens dance quietly under violet moons.' | " + kInfer + " -c " + ckpt_ +
                               " --score - --score-lines");
  ASSERT_EQ(seen.code, 0) << seen.err;
  ASSERT_EQ(unseen.code, 0) << unseen.err;
  EXPECT_NE(seen.out.find(kLine), std::string::npos) << seen.out;
  EXPECT_LT(std::stod(seen.out.substr(6)), std::stod(unseen.out.substr(6))) << seen.out << unseen.out;
  expect_one_line_error(infer("-p x --score-lines"), "--score-lines needs --score");
  expect_one_line_error(run(*dir_, "printf '' | " + kInfer + " -c " + ckpt_ + " --score -"), "no lines to score");
}

TEST_F(Infer, BadInputIsOneLineError) {
  auto bytes = slurp(ckpt_);
  expect_one_line_error(run(*dir_, kInfer + " -c " + dir_->file("missing.pt") + " -p x"), "not found");
  dir_->write("trunc.pt", bytes.substr(0, bytes.size() - 100));
  expect_one_line_error(run(*dir_, kInfer + " -c " + dir_->file("trunc.pt") + " -p x"), "truncated");
  auto flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x01;
  dir_->write("flip.pt", flipped);
  expect_one_line_error(run(*dir_, kInfer + " -c " + dir_->file("flip.pt") + " -p x"), "corrupted");
  dir_->write("text.pt", "this is not a checkpoint at all");
  expect_one_line_error(run(*dir_, kInfer + " -c " + dir_->file("text.pt") + " -p x"), "not a dracarys checkpoint");
  auto future = bytes;
  future[8] = 99;  // format version field
  dir_->write("future.pt", future);
  expect_one_line_error(run(*dir_, kInfer + " -c " + dir_->file("future.pt") + " -p x"), "format version 99");
  expect_one_line_error(run(*dir_, "printf 'bad \\377 bytes\\n' | " + kInfer + " -c " + ckpt_), "not valid UTF-8");
  expect_one_line_error(infer("--score " + dir_->file("no-such-file.txt")), "no such file");
  auto bad = infer("-p x --top-p 1.5");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("top-p"), std::string::npos) << bad.err;
  EXPECT_NE(infer("-p x --temperature 0").code, 0);
}

// The README's walkthrough, as a new user meets it on a terminal (shortened: a small model, a
// few steps): every line a program prints ends in a real line break, never in a visible escape.
TEST(Walkthrough, OnATerminalLinesEndInLineBreaksNotEscapes) {
  TempDir d;
  const std::string ckpt = d.file("sample.pt");
  auto on_terminal = [](std::vector<std::string> argv, const std::vector<Typed>& typing = {}) {
    auto session = run_on_terminal(argv, typing);
    EXPECT_TRUE(WIFEXITED(session.status) && WEXITSTATUS(session.status) == 0) << session.screen;
    EXPECT_EQ(session.screen.find("\\x"), std::string::npos) << "an escape on the terminal: " << session.screen;
    return session.screen;
  };
  // Train: the progress line shows how far the run is.
  const auto train = on_terminal({kTrain, "--out", ckpt, "--max-steps", "60", "--eval-every", "30", "--vocab-size",
                                  "512", "--layers", "2", "--d-model", "64", "--d-ff", "128", "--threads", "1"});
  EXPECT_NE(train.find("step 60/60 100% ["), std::string::npos) << train;
  EXPECT_NE(train.find("(mean of steps 31-60)"), std::string::npos) << train;
  // Complete, sample, look inside, play a scene, chat.
  const std::string prompt = "cersei lannister: When you play the game of thrones, you";
  auto out = on_terminal({kInfer, "-c", ckpt, "-p", prompt, "--greedy", "-n", "20"});
  EXPECT_NE(out.find(prompt), std::string::npos) << out;  // (the log shares the terminal)
  EXPECT_NE(out.find("\r\n"), std::string::npos) << out;
  out = on_terminal(
      {kInfer, "-c", ckpt, "--speaker", "arya stark", "-p", "", "--top-k", "40", "--num-samples", "3", "-n", "10"});
  size_t samples = 0;
  for (size_t at = 0; (at = out.find("arya stark:", at)) != std::string::npos; ++at) ++samples;
  EXPECT_EQ(samples, 3u) << out;
  out = on_terminal({kInfer, "-c", ckpt, "-p", prompt, "--attention-map", "-", "--layer", "1", "--head", "1"});
  EXPECT_NE(out.find("layer 1, head 1"), std::string::npos) << out;
  out = on_terminal({kInfer, "-c", ckpt, "-p", "jon snow: Winter is", "--turns", "3", "-n", "10"});
  EXPECT_NE(out.find("jon snow: Winter is"), std::string::npos) << out;
  EXPECT_GE(std::count(out.begin(), out.end(), '\n'), 1) << out;
  // The answer ends its line, so the next prompt starts at the left margin.
  out = on_terminal({kInfer, "-c", ckpt, "--chat", "--as", "Jon Snow", "-n", "10"},
                    {{"jon snow> ", "Winter is coming.\n"}, {"Winter is coming.\r\n", "\x04"}});
  const size_t typed = out.find("Winter is coming.\r\n");
  ASSERT_NE(typed, std::string::npos) << out;
  EXPECT_NE(out.find("\r\njon snow> ", typed), std::string::npos) << out;
}
