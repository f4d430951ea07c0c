// The parsers of outside bytes on their own, without LibTorch or the tokenizer plugin, so that
// they also run under AddressSanitizer (scripts/sanitize.sh): the checkpoint container and its
// metadata, bounded JSON, the corpus readers, and the option range checks.
#include <gtest/gtest.h>

#include <cmath>

#include "common/checkpoint_format.h"
#include "common/json_input.h"
#include "common/option_checks.h"
#include "data/corpus.h"
#include "data/errors.h"

using namespace dracarys;

namespace {

Checkpoint tiny() {
  Checkpoint c;
  c.config.layers = 1;
  c.config.heads = 1;
  c.config.d_model = 8;
  c.config.d_ff = 8;
  c.config.context = 4;
  c.config.vocab_size = 64;
  c.meta_json = R"({"state":{"step":3}})";
  c.tokenizer = "tokenizer bytes";
  c.model = std::string(static_cast<size_t>(c.config.model_bytes()), 'w');
  return c;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(CheckpointFormat, RoundTripsAndRefusesEveryTruncation) {
  const auto bytes = encode_checkpoint(tiny());
  const auto back = decode_checkpoint(bytes, "t.pt");
  EXPECT_EQ(back.config, tiny().config);
  EXPECT_EQ(back.model, tiny().model);
  EXPECT_EQ(nlohmann::json::parse(back.meta_json)["state"]["step"], 3);
  for (size_t cut = 0; cut < bytes.size(); cut += 97)
    EXPECT_THROW(decode_checkpoint(bytes.substr(0, cut), "t.pt"), CheckpointError) << cut;
  auto flipped = bytes;
  flipped[flipped.size() / 2] ^= 1;
  EXPECT_NE(error_of([&] { decode_checkpoint(flipped, "t.pt"); }).find("SHA-256 mismatch"), std::string::npos);
}

TEST(CheckpointFormat, MetadataMustDescribeTheWeightsItCarries) {
  auto c = tiny();
  c.config.context = 4096;  // valid, but its masks alone are 64 MB: not in this file
  auto small = tiny();
  small.config = c.config;
  small.model = tiny().model;
  EXPECT_NE(error_of([&] { decode_checkpoint(encode_checkpoint(small), "t.pt"); }).find("holds only"),
            std::string::npos);
}

TEST(JsonInput, DepthAndSizeAreBounded) {
  EXPECT_EQ(parse_untrusted_json(R"({"a":[1,{"b":"[[[["}]})", "x")["a"][1]["b"], "[[[[");
  EXPECT_NE(error_of([] {
              parse_untrusted_json(std::string(100000, '[') + std::string(100000, ']'), "meta");
            }).find("meta nests JSON deeper than 32 levels"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_untrusted_json("{\"a\": tru", "meta"); }).find("meta is not valid JSON (at byte"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { parse_untrusted_json(std::string(kMaxJsonBytes + 1, ' '), "meta"); }).find("more than the limit"),
      std::string::npos);
}

TEST(OptionChecks, RefuseNanInfinityAndOutOfRange) {
  EXPECT_NO_THROW(require_number("--lr", 0.5, 0, 1, true));
  EXPECT_THROW(require_number("--lr", 0.0, 0, 1, true), std::invalid_argument);
  EXPECT_THROW(require_number("--lr", std::nan(""), 0, 1), std::invalid_argument);
  EXPECT_THROW(require_number("--lr", INFINITY, 0, INFINITY), std::invalid_argument);
  EXPECT_EQ(error_of([] { require_count("--batch-size", 0, 1, 65536); }),
            "--batch-size must be a whole number from 1 to 65536, got 0");
}

TEST(CorpusText, ReadersTakeBytesAndKeepTheirLimits) {
  auto lines = parse_corpus_text("x.txt", "jon snow: I know nothing.\nhodor: Hodor.\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].line(), "jon snow: I know nothing.");
  CorpusOptions small;
  small.max_utterance_bytes = 10;
  EXPECT_THROW(parse_corpus_text("x.txt", "jon snow: I know nothing at all.\n", small), DataError);
  EXPECT_THROW(parse_corpus_text("x.csv", "Name,Sentence,Season,Episode\nx,\"open", {}), DataError);
  EXPECT_THROW(parse_corpus_text("x.txt", "bad \xff byte\n", {}), DataError);
}

TEST(CorpusText, ScenesKeepTheirOrderAndEpisodesAreSeparated) {
  const std::vector<Utterance> u = {{"ned stark", "Winter is coming.", "S01E01", "S01E01"},
                                    {"robert baratheon", "Gloomy.", "S01E01", "S01E01"},
                                    {"arya stark", "Not today.", "S08E03", "S08E03"},
                                    {"jon snow", "A text file's block.", "a.txt#0", "a.txt"},
                                    {"jon snow", "The next block.", "a.txt#1", "a.txt"}};
  EXPECT_EQ(training_lines(u, true),
            (std::vector<std::string>{"ned stark: Winter is coming.", "robert baratheon: Gloomy.", "",
                                      "arya stark: Not today.", "", "jon snow: A text file's block.",
                                      "jon snow: The next block."}));
  EXPECT_EQ(training_lines(u, false), (std::vector<std::string>{"Winter is coming.", "Gloomy.", "", "Not today.", "",
                                                                "A text file's block.", "The next block."}));
  EXPECT_EQ(count_speakers(u).at("ned stark"), 1);
  EXPECT_EQ(split_speaker_list(" tyrion lannister,cersei lannister ,, "),
            (std::vector<std::string>{"tyrion lannister", "cersei lannister"}));
  EXPECT_EQ(split_speaker_line("jon snow: I know nothing."),
            (std::pair<std::string, std::string>{"jon snow", "I know nothing."}));
  EXPECT_EQ(split_speaker_line("no speaker here"), (std::pair<std::string, std::string>{"", "no speaker here"}));
  EXPECT_EQ(split_speaker_line(speaker_line("hodor", "")), (std::pair<std::string, std::string>{"hodor", ""}));
}
