// dracarys-infer --attention-map: well-formed SVG/HTML, one panel per layer and head, the
// numbers the model really used, the masked triangle marked, hostile prompts escaped.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <codecvt>
#include <filesystem>
#include <fstream>
#include <locale>
#include <regex>
#include <sstream>

#include "checkpoint/checkpoint.h"
#include "cli_util.h"
#include "data/tokenizer.h"
#include "engine/attention_boxes.h"
#include "engine/loaded_model.h"
#include "engine/probe.h"

using namespace dracarys;
using dracarys::testing::expect_one_line_error;
using dracarys::testing::kInfer;
using dracarys::testing::kPrompt;
using dracarys::testing::kTrain;
using dracarys::testing::run;
using dracarys::testing::slurp;
using dracarys::testing::TempDir;
using dracarys::testing::train_once;

namespace {

int sh(const std::string& cmd) {
  int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

class AttentionMap : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::string text;
    for (int i = 0; i < 30; ++i)
      text +=
          "cersei lannister: When you play the game of thrones, you win or you die.\n"
          "jon snow: The snows are coming " +
          std::to_string(i) + " times.\n";
    dir_->write("c.txt", text);
    ckpt_ = dir_->file("m.pt");
    const auto r = train_once(*dir_, dir_->file("c.txt"),
                              " --layers 2 --heads 3 --d-model 48 --d-ff 96 --context 32 --vocab-size 320 "
                              "--max-steps 30 --eval-every 30 --val-share 0 --threads 1",
                              ckpt_);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
  static std::string ckpt_;
};
TempDir* AttentionMap::dir_ = nullptr;
std::string AttentionMap::ckpt_;

}  // namespace

TEST_F(AttentionMap, SvgHasEveryPanelAndTheModelsWeights) {
  const std::string prompt = "cersei lannister: When you play";
  const auto svg = dir_->file("a.svg");
  ASSERT_EQ(sh(kInfer + " -c " + ckpt_ + " -p '" + prompt + "' --attention-map " + svg + " 2>/dev/null"), 0);
  ASSERT_EQ(sh("xmllint --noout " + svg), 0) << "not well-formed XML";
  const std::string doc = slurp(svg);
  std::regex panel("<g class=\"panel\" data-layer=\"(\\d+)\" data-head=\"(\\d+)\">");
  EXPECT_EQ(std::distance(std::sregex_iterator(doc.begin(), doc.end(), panel), std::sregex_iterator()), 2 * 3);

  // The weights of layer 1, head 2 recomputed here from the checkpoint.
  auto ckpt = load_checkpoint(ckpt_);
  auto model = load_model(ckpt, torch::kCPU);
  auto tok = Tokenizer::from_bytes(ckpt.tokenizer);
  auto ids = tok.encode(prompt);
  const int64_t T = static_cast<int64_t>(ids.size());
  std::vector<AttentionTrace> att;
  {
    torch::NoGradGuard ng;
    model->forward(torch::tensor(ids).unsqueeze(0), nullptr, &att);
  }
  auto expected = att[1].filter[0][2];
  const auto start = doc.find("data-layer=\"1\" data-head=\"2\"");
  const auto end = doc.find("</g>", start);
  ASSERT_NE(start, std::string::npos);
  const std::string block = doc.substr(start, end - start);
  std::regex cell("data-q=\"(\\d+)\" data-k=\"(\\d+)\" data-w=\"([0-9.e-]+)\"");
  int cells = 0;
  for (auto it = std::sregex_iterator(block.begin(), block.end(), cell); it != std::sregex_iterator(); ++it, ++cells) {
    int q = std::stoi((*it)[1]), k = std::stoi((*it)[2]);
    EXPECT_LE(k, q);
    EXPECT_NEAR(std::stod((*it)[3]), expected[q][k].item<double>(), 1e-5) << q << "," << k;
  }
  EXPECT_EQ(cells, T * (T + 1) / 2);
  // The upper triangle is drawn as masked, not as zero weights.
  std::regex masked("class=\"masked\"");
  EXPECT_EQ(std::distance(std::sregex_iterator(block.begin(), block.end(), masked), std::sregex_iterator()),
            T * (T - 1) / 2);
  EXPECT_NE(doc.find("masked (future)"), std::string::npos);  // the legend says so
  // A saved file says what it shows: a heading with the prompt.
  EXPECT_NE(doc.find("class=\"heading\""), std::string::npos);
  EXPECT_NE(doc.find("Attention filters (" + std::to_string(T) + " tokens): " + prompt + "</text>"), std::string::npos);
}

TEST_F(AttentionMap, HostilePromptIsEscapedInSvgAndHtml) {
  const std::string prompt = "<script>alert(\"x\")</script> & 'quotes' \xE2\x80\x94 \xE9\xBE\x8D";
  dir_->write("prompt.txt", prompt);
  for (std::string ext : {".svg", ".html"}) {
    const auto out = dir_->file("h" + ext);
    ASSERT_EQ(sh(kInfer + " -c " + ckpt_ + " -p \"$(cat " + dir_->file("prompt.txt") + ")\" --attention-map " + out +
                 " 2>/dev/null"),
              0);
    EXPECT_EQ(sh("xmllint --noout " + out), 0) << ext;
    if (ext == ".html") {
      EXPECT_EQ(sh("xmllint --html --noout " + out + " 2>/dev/null"), 0);
      // Wide grids shrink to the window instead of hiding heads behind a horizontal scroll.
      EXPECT_NE(slurp(out).find("svg{max-width:100%;height:auto}"), std::string::npos);
    }
    const std::string doc = slurp(out);
    EXPECT_EQ(doc.find("<script>alert"), std::string::npos) << ext;
    EXPECT_NE(doc.find("&lt;"), std::string::npos) << ext;
    // Nothing is fetched when viewed: no external scripts, images, styles or fonts.
    EXPECT_EQ(doc.find(" src="), std::string::npos) << ext;
    EXPECT_EQ(doc.find("href=\"http"), std::string::npos) << ext;
    EXPECT_EQ(doc.find("@import"), std::string::npos) << ext;
  }
  // One layer only, on request; a layer that does not exist is an error.
  const auto one = dir_->file("one.svg");
  ASSERT_EQ(sh(kInfer + " -c " + ckpt_ + " -p 'jon snow: The' --layer 1 --attention-map " + one + " 2>/dev/null"), 0);
  std::string doc = slurp(one);
  EXPECT_EQ(doc.find("data-layer=\"0\""), std::string::npos);
  EXPECT_NE(doc.find("data-layer=\"1\" data-head=\"2\""), std::string::npos);
  EXPECT_NE(sh(kInfer + " -c " + ckpt_ + " -p x --layer 7 --attention-map " + one + " 2>/dev/null"), 0);
}

// --explain: one head's every box, in the guide's order, each with its shape and its numbers.
TEST_F(AttentionMap, ExplainDrawsEveryBoxOfOneHeadWithItsNumbers) {
  const std::string prompt = "cersei lannister: When you play";
  for (std::string ext : {".svg", ".html"}) {
    const auto out = dir_->file("explain" + ext);
    auto r = run(*dir_, kInfer + " -c " + ckpt_ + " -p '" + prompt + "' --attention-map " + out +
                            " --explain --layer 1 --head 2");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(sh("xmllint --noout " + out), 0) << ext;
    const std::string doc = slurp(out);
    auto m = load_for_inference(ckpt_, torch::kCPU);
    const auto traced = trace_sequence(m.model, m.tokenizer, m.tokenizer.encode(prompt));
    const auto boxes = head_boxes(traced, 1, 2);
    size_t at = 0;
    for (const auto& b : boxes) {  // in order, each with its shape
      const std::string head = "<g class=\"box\" data-name=\"" + b.name + "\" data-rows=\"" +
                               std::to_string(b.values.size(0)) + "\" data-cols=\"" + std::to_string(b.values.size(1)) +
                               "\">";
      const auto found = doc.find(head, at);
      ASSERT_NE(found, std::string::npos) << b.name;
      at = found;
      // Its first cell holds the box's first number.
      const auto v = doc.find("data-v=\"", found) + 8;
      const double drawn = std::stod(doc.substr(v, doc.find('"', v) - v));
      EXPECT_FLOAT_EQ(static_cast<float>(drawn), b.values[0][0].item<float>()) << b.name;
    }
    EXPECT_NE(doc.find("data-v=\"-inf\""), std::string::npos) << "the mask's cells";
  }
  // --explain draws into a file; a head the model lacks is refused in one line.
  expect_one_line_error(run(*dir_, kInfer + " -c " + ckpt_ + " -p x --explain --attention-map -"), "--explain");
  expect_one_line_error(
      run(*dir_, kInfer + " -c " + ckpt_ + " -p x --explain --head 3 --attention-map " + dir_->file("e.svg")),
      "head 3");
}

// --probe-strip: one head's filter at the recorded steps, side by side, from CHECKPOINT.probe.
TEST_F(AttentionMap, ProbeStripDrawsOneHeadAcrossTheRecordedSteps) {
  const auto ckpt = dir_->file("probed.pt");
  std::filesystem::copy_file(ckpt_, ckpt, std::filesystem::copy_options::overwrite_existing);
  const auto strip = dir_->file("strip.svg");
  expect_one_line_error(run(*dir_, kInfer + " -c " + ckpt + " --probe-strip " + strip), "no probe file");
  auto m = load_for_inference(ckpt, torch::kCPU);
  auto record = start_probe(m.model, m.tokenizer, kPrompt);
  for (int64_t step = 0; step < 12; ++step) record_probe(record, m.model, 10 * step, 2.0);
  write_probe_file(probe_path(ckpt), record);
  auto r = run(*dir_, kInfer + " -c " + ckpt + " --probe-strip " + strip + " --layer 1 --head 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(sh("xmllint --noout " + strip), 0);
  const std::string doc = slurp(strip);
  std::regex panel("<g class=\"panel\" data-step=\"(\\d+)\">");
  std::vector<int> steps;
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), panel); it != std::sregex_iterator(); ++it)
    steps.push_back(std::stoi((*it)[1]));
  EXPECT_EQ(steps, (std::vector<int>{0, 10, 30, 40, 60, 70, 90, 110}));  // eight, the first and the last among them
  expect_one_line_error(run(*dir_, kInfer + " -c " + ckpt + " --probe-strip " + strip + " --head 5"), "--head 5");
  // Another file, by --probe-file; which is only for --probe-strip.
  std::filesystem::copy_file(probe_path(ckpt), dir_->file("other.probe"),
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(run(*dir_, kInfer + " -c " + ckpt_ + " --probe-strip " + dir_->file("other.html") + " --probe-file " +
                           dir_->file("other.probe"))
                .code,
            0);
  EXPECT_NE(slurp(dir_->file("other.html")).find("data-step=\"110\""), std::string::npos);
  expect_one_line_error(run(*dir_, kInfer + " -c " + ckpt + " -p x --probe-file " + dir_->file("other.probe")),
                        "--probe-file is for --probe-strip");
  // A probe file made for another shape, or with ids outside the vocabulary, is refused as the
  // server refuses it, not drawn.
  auto other_shape = record;
  other_shape.layers = 7;
  other_shape.snapshots.clear();  // (its filters would have 7 layers too)
  write_probe_file(dir_->file("shape.probe"), other_shape);
  expect_one_line_error(
      run(*dir_, kInfer + " -c " + ckpt + " --probe-strip " + strip + " --probe-file " + dir_->file("shape.probe")),
      "was recorded for another model's shape (7 layers");
  for (const int64_t id : {int64_t{399999}, int64_t{-5}}) {
    auto other_ids = record;
    other_ids.ids[0] = id;
    write_probe_file(dir_->file("ids.probe"), other_ids);
    expect_one_line_error(
        run(*dir_, kInfer + " -c " + ckpt + " --probe-strip " + strip + " --probe-file " + dir_->file("ids.probe")),
        "holds tokens outside this model's vocabulary");
  }
}

TEST_F(AttentionMap, TextHeatmapFitsEightyColumns) {
  const auto out = dir_->file("t.txt");
  std::string long_prompt;
  for (int i = 0; i < 12; ++i) long_prompt += "the game of thrones ";
  ASSERT_EQ(sh(kInfer + " -c " + ckpt_ + " -p '" + long_prompt + "' --attention-map - --layer 1 --head 1 > " + out +
               " 2>/dev/null"),
            0);
  std::ifstream in(out);
  int rows = 0;
  for (std::string line; std::getline(in, line);) {
    std::wstring_convert<std::codecvt_utf8<wchar_t>> conv;
    EXPECT_LE(conv.from_bytes(line).size(), 80u) << line;
    rows += line.find('|') != std::string::npos;
  }
  EXPECT_GE(rows, 32);  // the prompt fills the 32-token context
}
