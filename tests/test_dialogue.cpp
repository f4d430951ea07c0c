// The dialogue features end to end: a memorised scene comes back in order (--turns), a chat
// over a pipe and over a pseudo-terminal (--chat --as --reply-as), the speakers a checkpoint
// lists, the speaker filter, fine-tuning (--init-from) and early stopping (--patience).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "cli_util.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

std::vector<nlohmann::json> metrics_of(const std::string& path) {
  std::vector<nlohmann::json> rows;
  for (const auto& l : lines_of(slurp(path))) rows.push_back(nlohmann::json::parse(l));
  return rows;
}

class Dialogue : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    std::string error;
    ckpt_ = train_scene_model(*dir_, &corpus_, &error);
    ASSERT_FALSE(ckpt_.empty()) << error;
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
  static std::string corpus_, ckpt_;
};
TempDir* Dialogue::dir_ = nullptr;
std::string Dialogue::corpus_, Dialogue::ckpt_;

}  // namespace

TEST_F(Dialogue, ScriptedSceneComesBackInOrder) {
  auto r = run(*dir_, kInfer + " -c " + ckpt_ + " -p \"ned stark: Winter\" --turns 3 --greedy");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), kScene) << r.out;
  // The reference one-token step (the model's forward()) carries the same scene.
  r = run(*dir_, kInfer + " -c " + ckpt_ + " -p \"ned stark: Winter\" --turns 3 --greedy --kernels reference");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), kScene) << r.out;

  r = run(*dir_, kInfer + " -c " + ckpt_ + " -p \"ned stark: Winter\" --turns 3 --greedy --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto objects = lines_of(r.out);
  ASSERT_EQ(objects.size(), kScene.size()) << r.out;
  const std::vector<std::string> speakers = {"ned stark", "robert baratheon", "ned stark", "cersei lannister"};
  for (size_t i = 0; i < objects.size(); ++i) {
    auto j = nlohmann::json::parse(objects[i]);
    EXPECT_EQ(j["turn"], i);
    EXPECT_EQ(j["speaker"], speakers[i]);
    EXPECT_EQ(j["line"], kScene[i]);
    EXPECT_EQ(speakers[i] + ": " + j["text"].get<std::string>(), kScene[i]);
  }
}

TEST_F(Dialogue, LongScenesDropTheOldestLinesAndGoOn) {
  // 40 utterances of about 12 tokens each: far past the 64-token context, many rebuilds.
  auto r = run(*dir_, kInfer + " -c " + ckpt_ + " -p \"ned stark: Winter\" --turns 39 --greedy");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 40u) << r.out;
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i], kScene[i % kScene.size()]) << "line " << i;
  EXPECT_NE(r.err.find("the oldest lines were dropped"), std::string::npos) << r.err;
}

TEST_F(Dialogue, ChatOverAPipeAnswersInTheScenesOrder) {
  auto r = run(*dir_, "printf 'Winter is coming.\\nSomeone has to be.\\n' | " + kInfer + " -c " + ckpt_ +
                          " --chat --as \"ned stark\" --greedy");
  ASSERT_EQ(r.code, 0) << r.err;
  // The transcript keeps your lines too, as the corpus writes a line.
  EXPECT_EQ(lines_of(r.out), (std::vector<std::string>{kScene[0], kScene[1], kScene[2], kScene[3]})) << r.out;

  // --reply-as chooses who answers; --json shows both sides of the exchange.
  r = run(*dir_, "printf 'Winter is coming.\\n' | " + kInfer + " -c " + ckpt_ +
                     " --chat --as \"ned stark\" --reply-as \"robert baratheon\" --greedy --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto objects = lines_of(r.out);
  ASSERT_EQ(objects.size(), 2u) << r.out;
  EXPECT_EQ(nlohmann::json::parse(objects[0])["line"], kScene[0]);
  EXPECT_EQ(nlohmann::json::parse(objects[1])["line"], kScene[1]);
  EXPECT_EQ(nlohmann::json::parse(objects[1])["speaker"], "robert baratheon");
}

TEST_F(Dialogue, ChatOnAPseudoTerminal) {
  // The second answer needs the first exchange, which the cache carries.
  const auto session =
      run_on_terminal({kInfer, "-c", ckpt_, "--chat", "--as", "ned stark", "--greedy"},
                      // Each answer ends its own line (a terminal shows "\r\n"): the next prompt starts a new one.
                      {{"ned stark> ", "Winter is coming.\n"},
                       {kScene[1] + "\r\nned stark> ", "Someone has to be.\n"},
                       {kScene[3] + "\r\nned stark> ", "\x04"}});
  EXPECT_EQ(session.typed, 3u) << session.screen;
  EXPECT_TRUE(WIFEXITED(session.status) && WEXITSTATUS(session.status) == 0) << session.screen;
  EXPECT_EQ(session.screen.find("\\x"), std::string::npos) << session.screen;
}

TEST_F(Dialogue, SceneOnAPseudoTerminalIsOneLinePerUtterance) {
  const auto session = run_on_terminal({kInfer, "-c", ckpt_, "-p", "ned stark: Winter", "--turns", "3", "--greedy"}, {},
                                       /*hide_log=*/true);
  EXPECT_TRUE(WIFEXITED(session.status) && WEXITSTATUS(session.status) == 0) << session.screen;
  EXPECT_EQ(session.screen, kScene[0] + "\r\n" + kScene[1] + "\r\n" + kScene[2] + "\r\n" + kScene[3] + "\r\n");
}

TEST_F(Dialogue, SpeakerNamesMatchIgnoringCaseAndTyposGetASuggestion) {
  auto r = run(*dir_, "printf 'Winter is coming.\\n' | " + kInfer + " -c " + ckpt_ +
                          " --chat --as \"Ned Stark\" --reply-as \"ROBERT BARATHEON\" --greedy");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), (std::vector<std::string>{kScene[0], kScene[1]})) << r.out;
  expect_one_line_error(run(*dir_, "echo hi | " + kInfer + " -c " + ckpt_ + " --chat --as \"ned strak\""),
                        "did you mean 'ned stark'?");
  // A first name alone is suggested as the one speaker it starts.
  expect_one_line_error(run(*dir_, "echo hi | " + kInfer + " -c " + ckpt_ + " --chat --as \"Cersei\""),
                        "did you mean 'cersei lannister'?");
  // --speaker takes the corpus's spelling in any case, and warns about a name it does not know.
  const auto same = run(*dir_, kInfer + " -c " + ckpt_ + " --speaker \"NED STARK\" -p Winter --greedy -n 8");
  const auto lower = run(*dir_, kInfer + " -c " + ckpt_ + " --speaker \"ned stark\" -p Winter --greedy -n 8");
  ASSERT_EQ(same.code, 0) << same.err;
  EXPECT_EQ(same.out, lower.out);
  EXPECT_EQ(same.err.find("not a speaker"), std::string::npos) << same.err;
  const auto unknown = run(*dir_, kInfer + " -c " + ckpt_ + " --speaker Cersei -p Winter --greedy -n 8");
  EXPECT_EQ(unknown.code, 0) << unknown.err;
  EXPECT_NE(unknown.err.find("--speaker 'Cersei' is not a speaker of the training corpus; did you mean 'cersei "
                             "lannister'?"),
            std::string::npos)
      << unknown.err;
}

TEST_F(Dialogue, SpeakersAreListedAndChecked) {
  auto r = run(*dir_, kInfer + " -c " + ckpt_ + " --list-speakers");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), (std::vector<std::string>{"      12  ned stark", "       6  cersei lannister",
                                                       "       6  robert baratheon"}));
  r = run(*dir_, kInfer + " -c " + ckpt_ + " --list-speakers --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["speakers"][0]["speaker"], "ned stark");
  EXPECT_EQ(j["speakers"][0]["lines"], 12);

  expect_one_line_error(run(*dir_, "echo hi | " + kInfer + " -c " + ckpt_ + " --chat --as \"the hound\""),
                        "not a speaker of the training corpus");
  expect_one_line_error(run(*dir_, kInfer + " -c " + ckpt_ + " --chat"), "--chat needs --as");
  expect_one_line_error(run(*dir_, kInfer + " -c " + ckpt_ + " --as \"ned stark\" -p x"), "--as is for --chat");
  expect_one_line_error(run(*dir_, kInfer + " -c " + ckpt_ + " -p x --turns -1"), "--turns must be a whole number");
}

TEST_F(Dialogue, SpeakerFilterKeepsOneCharactersLines) {
  const auto out = dir_->file("ned.pt");
  auto r = run(*dir_, kTrain + " --corpus " + corpus_ + " --out " + out + kSceneShape +
                          " --max-steps 2 --speakers \" ned stark , \"");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("12 utterances"), std::string::npos) << r.err;
  // The evaluation's sample speaks as the first speaker kept, not as the seed line's Cersei.
  EXPECT_NE(r.err.find("sample: ned stark:"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("sample: cersei"), std::string::npos) << r.err;
  r = run(*dir_, kInfer + " -c " + out + " --list-speakers");
  EXPECT_EQ(lines_of(r.out), std::vector<std::string>{"      12  ned stark"});
  expect_one_line_error(run(*dir_, kTrain + " --corpus " + corpus_ + " --out " + dir_->file("x.pt") + kSceneShape +
                                       " --max-steps 2 --speakers \"ned stark,the hound\""),
                        "speaker 'the hound' has no line in the corpus");
}

TEST_F(Dialogue, InitFromKeepsTokenizerAndShapeAndStartsAFreshOptimizer) {
  const auto tuned = dir_->file("tuned.pt");
  auto r = run(*dir_, kTrain + " --init-from " + ckpt_ + " --corpus " + corpus_ + " --out " + tuned +
                          " --val-share 0 --max-steps 3 --eval-every 1 --batch-size 4 --threads 1 --lr 1e-4 --min-lr 0 "
                          "--warmup 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("fine-tuning from"), std::string::npos) << r.err;
  const auto base = load_checkpoint(ckpt_), fine = load_checkpoint(tuned);
  EXPECT_EQ(fine.config, base.config);
  EXPECT_EQ(fine.tokenizer, base.tokenizer);
  auto meta = nlohmann::json::parse(fine.meta_json);
  EXPECT_EQ(meta["state"]["step"], 3);                // counted from 0, not from the base's 600
  EXPECT_EQ(meta["train_options"]["batch_size"], 4);  // training options from the command line
  // The weights came from the base: its first loss is the base's, far below a fresh model's
  // ln(300) = 5.7 nats.
  const auto rows = metrics_of(tuned + ".metrics.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["step"], 1);
  EXPECT_LT(rows[0]["train_loss"].get<double>(), 2.0);
  // A fresh schedule: no warm-up asked, so step 1 trains at the peak rate (wsd holds it until
  // the last 30% of the three steps), and the last step at the floor.
  EXPECT_DOUBLE_EQ(rows[0]["lr"].get<double>(), 1e-4);
  EXPECT_DOUBLE_EQ(rows[2]["lr"].get<double>(), 0.0);

  expect_one_line_error(run(*dir_, kTrain + " --init-from " + ckpt_ + " --resume " + ckpt_ + " --max-steps 1"),
                        "not both");
  expect_one_line_error(run(*dir_, kTrain + " --init-from " + ckpt_ + " --corpus " + corpus_ + " --out " +
                                       dir_->file("y.pt") + " --layers 3 --max-steps 1"),
                        "--layers 3 contradicts");
  expect_one_line_error(
      run(*dir_, kTrain + " --init-from " + ckpt_ + " --corpus " + corpus_ + " --out " + ckpt_ + " --max-steps 1"),
      "is the checkpoint --init-from starts from");
  // Restating the checkpoint's own shape is not a contradiction.
  r = run(*dir_, kTrain + " --init-from " + ckpt_ + " --corpus " + corpus_ + " --out " + dir_->file("z.pt") +
                     " --layers 2 --d-model 64 --val-share 0 --max-steps 1 --threads 1");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Patience, StopsAtTheFirstEvaluationThatMakesItRunOut) {
  // Lines of random words: validation text is unpredictable, so a model that learns the
  // training lines by heart soon does worse on it.
  TempDir d;
  std::mt19937 rng(7);
  const std::vector<std::string> words = {"sword", "crow", "winter", "gold", "wolf", "king", "north", "fire", "ship"};
  std::string text;
  for (int i = 0; i < 200; ++i) {
    text += "speaker" + std::to_string(rng() % 5) + ":";
    for (int w = 0; w < 6; ++w) text += " " + words[rng() % words.size()];
    text += "\n";
  }
  const auto corpus = d.write("random.txt", text);  // 8 episodes of 25 lines
  const auto out = d.file("p.pt");
  constexpr int kPatience = 2;
  auto r = run(d, kTrain + " --corpus " + corpus + " --out " + out + kShape +
                      " --vocab-size 300 --val-share 0.25 --lr 1e-2 --warmup 0.002 --eval-every 5 --max-steps 3000 "
                      "--patience " +
                      std::to_string(kPatience));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_NE(r.err.find("stopped early"), std::string::npos) << r.err;
  // Replay the rule on the logged validation losses: the counter reaches the patience at the
  // last evaluation and not before.
  const auto rows = metrics_of(out + ".metrics.jsonl");
  double best = INFINITY;
  int since_best = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const double v = rows[i]["val_loss"].get<double>();
    since_best = v < best ? 0 : since_best + 1;
    best = std::min(best, v);
    EXPECT_EQ(since_best >= kPatience, i + 1 == rows.size()) << "evaluation " << i;
  }
  EXPECT_LT(rows.back()["step"].get<int64_t>(), 3000);
  EXPECT_TRUE(std::filesystem::exists(d.file("p.best.pt")));
}
