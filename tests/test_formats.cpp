// The parsers of outside bytes on their own, without LibTorch or the tokenizer plugin, so that
// they also run under AddressSanitizer (scripts/sanitize.sh): the checkpoint container and its
// metadata, bounded JSON, the corpus readers, and the option range checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "checkpoint/checkpoint_format.h"
#include "checkpoint/json_input.h"
#include "checkpoint/tensor_file.h"
#include "cli/option_checks.h"
#include "data/corpus.h"
#include "data/errors.h"
#include "data/tokenizer_model_check.h"

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

TEST(TensorFile, RoundTripsEveryDtypeAndPutsDataWhereTheHeaderSays) {
  const float w[6] = {1.5f, -2, 0, 3, 4, 5};
  const int64_t step = 42;
  const bool mask[2] = {true, false};
  const auto bytes = encode_tensor_file({{"w", DType::kF32, {2, 3}, w, sizeof w},
                                         {"step", DType::kI64, {}, &step, sizeof step},
                                         {"mask", DType::kBool, {2}, mask, sizeof mask},
                                         {"empty", DType::kF32, {0, 4}, nullptr, 0}},
                                        {{"format", "test"}});
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  EXPECT_EQ((8 + header) % 8, 0u) << "the data starts 8-byte aligned";
  const auto t = parse_tensor_file(bytes, "test weights");
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t.at("w").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(bytes.data() + t.at("w").offset, w, sizeof w), 0);
  EXPECT_EQ(std::memcmp(bytes.data() + t.at("step").offset, &step, 8), 0);
  EXPECT_EQ(t.at("mask").dtype, DType::kBool);
  EXPECT_EQ(t.at("empty").bytes, 0u);
  for (size_t cut = 0; cut < bytes.size(); ++cut)
    EXPECT_THROW(parse_tensor_file(bytes.substr(0, cut), "test weights"), std::invalid_argument) << cut;
}

TEST(TensorFile, RefusesRecordsThatDoNotTileTheData) {
  auto file = [](const std::string& header, size_t data_bytes) {
    std::string out(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + std::string(data_bytes, 'x');
  };
  auto why = [](const std::string& bytes) { return error_of([&] { parse_tensor_file(bytes, "w"); }); };
  EXPECT_NE(why(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8)).find("not what its dtype"),
            std::string::npos);
  EXPECT_NE(why(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)).find("gaps"), std::string::npos);
  EXPECT_NE(why(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                     4))
                .find("overlap"),
            std::string::npos);
  EXPECT_NE(why(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 6)).find("belong to no tensor"),
            std::string::npos);
  EXPECT_NE(why(file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).find("malformed shape"),
            std::string::npos);
  EXPECT_NE(why(file(R"({"a":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,4]}})", 4))
                .find("not what its dtype"),
            std::string::npos);
  EXPECT_NE(why(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551615,4]}})", 4))
                .find("outside the data"),
            std::string::npos);
  EXPECT_NE(why(file(R"([1,2])", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(why(file(std::string(100, '['), 0)).find("deeper than"), std::string::npos);
}

TEST(TokenizerModelCheck, AcceptsWhatDracarysTrainsAndRefusesCharmapsAndJunk) {
  std::ifstream in(std::string(DRACARYS_SOURCE_DIR) + "/tests/fuzz/seeds/tokenizer/bpe-400.model", std::ios::binary);
  const std::string model((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(model.size(), 1000u);
  EXPECT_NO_THROW(check_tokenizer_model(model));
  // A second normaliser with a precompiled character map (what reached sentencepiece's bug).
  const std::string normalizer("\x0a\x08identity\x12\x04\xff\xff\xff\x7f", 16);
  const std::string with_map = model + "\x1a" + std::string(1, static_cast<char>(normalizer.size())) + normalizer;
  EXPECT_NE(error_of([&] { check_tokenizer_model(with_map); }).find("character map"), std::string::npos);
  const std::string nfkc("\x0a\x04nfkc", 6);
  EXPECT_NE(error_of([&] { check_tokenizer_model(model + "\x1a\x06" + nfkc); }).find("not the identity"),
            std::string::npos);
  for (size_t cut = 1; cut < model.size(); cut += 7) {
    // A cut at a field boundary is a shorter model, still well-formed; anywhere else, refused.
    try {
      check_tokenizer_model(model.substr(0, cut));
    } catch (const DataError&) {
    }
  }
  EXPECT_THROW(check_tokenizer_model(""), DataError);
  EXPECT_THROW(check_tokenizer_model(std::string(64, '\xff')), DataError);
  // A piece whose score is not finite (field 2, fixed32 NaN).
  const std::string piece(
      "\x0a\x01"
      "a"
      "\x15\x00\x00\xc0\x7f",
      8);
  EXPECT_NE(error_of([&] { check_tokenizer_model("\x0a\x08" + piece + model); }).find("not a finite"),
            std::string::npos);
}

TEST(Errors, MessagesKeepTheirTextPastANulByte) {
  const DataError e(std::string("speaker 'a\0b' has no line", 25));
  EXPECT_EQ(std::string(e.what()), "speaker 'a\\x00b' has no line");
  const CheckpointError c(std::string("weights hold x\0y", 16));
  EXPECT_EQ(std::string(c.what()), "weights hold x\\x00y");
}

TEST(JsonInput, DepthAndSizeAreBounded) {
  EXPECT_EQ(parse_untrusted_json(R"({"a":[1,{"b":"[[[["}]})", "x")["a"][1]["b"], "[[[[");
  EXPECT_NE(error_of([] {
              parse_untrusted_json(std::string(100000, '[') + std::string(100000, ']'), "meta");
            }).find("meta nests JSON deeper than 32 levels"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_untrusted_json("{\"a\": tru", "meta"); }).find("meta is not valid JSON (at byte"),
            std::string::npos);
  EXPECT_EQ(error_of([] { parse_untrusted_json("{\"da\":[2,2e0000489658439]}", "meta"); }),
            "meta holds a number too large to read");
  EXPECT_EQ(error_of([] { ModelConfig::from_json("{\"layers\":1e999}"); }),
            "model config holds a number too large to read");
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
