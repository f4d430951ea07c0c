// The parsers of outside bytes on their own, without LibTorch or the tokenizer plugin, so that
// they also run under AddressSanitizer (scripts/sanitize.sh): the checkpoint container and its
// metadata, the probe file, bounded JSON, the corpus readers, and the option range checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "checkpoint/checkpoint_format.h"
#include "checkpoint/json_input.h"
#include "checkpoint/probe_file.h"
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

// A probe of 2 layers × 3 heads over 4 tokens; snapshot `step` has filters that differ by step.
ProbeRecord tiny_probe(int snapshots) {
  ProbeRecord r;
  r.text = "when you play";
  r.ids = {5, 9, 2, 7};
  r.pieces = {"\xC2\xB7when", "\xC2\xB7you", "\xC2\xB7pl", "ay"};
  r.layers = 2;
  r.heads = 3;
  for (int n = 0; n < snapshots; ++n) {
    ProbeSnapshot s{10 * n, n == 0 ? std::nan("") : 3.0 / (n + 1), {}};
    for (int64_t lh = 0; lh < r.layers * r.heads; ++lh)
      for (int64_t t = 0; t < 4; ++t)
        for (int64_t k = 0; k < 4; ++k) {
          // Row t: weight on key 0 grows with the step; the rest is shared by keys 1..t.
          const float first = t == 0 ? 1.0f : 1.0f / static_cast<float>(n + 2);
          s.filters.push_back(k > t ? 0.0f : k == 0 ? first : (1.0f - first) / static_cast<float>(t));
        }
    add_snapshot(r, std::move(s));
  }
  return r;
}

TEST(ProbeFile, RoundTripsAndRefusesEveryDamage) {
  const auto r = tiny_probe(3);
  const std::string bytes = probe_bytes(r);
  const auto back = parse_probe(bytes, "p");
  EXPECT_EQ(back.text, r.text);
  EXPECT_EQ(back.ids, r.ids);
  EXPECT_EQ(back.pieces, r.pieces);
  ASSERT_EQ(back.snapshots.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(back.snapshots[i].step, r.snapshots[i].step);
    EXPECT_TRUE(back.snapshots[i].filters == r.snapshots[i].filters);
  }
  EXPECT_TRUE(std::isnan(back.snapshots[0].val_loss));
  EXPECT_EQ(back.snapshots[2].val_loss, 1.0);
  EXPECT_EQ(probe_bytes(back), bytes);

  // Every truncation is refused, and so is every damage below, each with the file named.
  for (size_t n = 0; n < bytes.size(); ++n) EXPECT_NE(error_of([&] { parse_probe(bytes.substr(0, n), "p"); }), "") << n;
  uint32_t header_size = 0;
  std::memcpy(&header_size, bytes.data() + 8, 4);
  auto damaged = [&](size_t at, const void* value, size_t size) {
    std::string b = bytes;
    std::memcpy(b.data() + at, value, size);
    return error_of([&] { parse_probe(b, "the probe file x.probe"); });
  };
  const size_t first_snapshot = 12 + header_size, snapshot = r.snapshot_bytes();
  const int64_t back_step = 0;  // the step before it again
  EXPECT_NE(damaged(first_snapshot + snapshot, &back_step, 8).find("steps do not increase"), std::string::npos);
  const double bad_loss = -1;
  EXPECT_NE(damaged(first_snapshot + 8, &bad_loss, 8).find("impossible loss"), std::string::npos);
  const float above = 1.5f, in_future = 0.25f, nan = std::nanf("");
  EXPECT_NE(damaged(first_snapshot + 16, &above, 4).find("weight that no filter can"), std::string::npos);
  EXPECT_NE(damaged(first_snapshot + 16 + 4, &in_future, 4).find("weight that no filter can"), std::string::npos);
  EXPECT_NE(damaged(first_snapshot + 16, &nan, 4).find("weight that no filter can"), std::string::npos);
  const float shifted = 0.5f;  // row 0 is {1}: now it sums to 0.5
  EXPECT_NE(damaged(first_snapshot + 16, &shifted, 4).find("does not sum to 1"), std::string::npos);
  const uint32_t huge = 0xFFFFFFFFu;
  EXPECT_NE(damaged(8, &huge, 4).find("header"), std::string::npos);
  EXPECT_NE(damaged(0, "DRPROBE9", 8).find("not a probe file"), std::string::npos);
  EXPECT_NE(error_of([&] { parse_probe(bytes + "x", "p"); }).find("3 snapshots its header declares"),
            std::string::npos);
  for (const char* header_json :
       {R"({"text":"a","ids":[1],"pieces":["a"],"layers":0,"heads":1,"snapshots":0})",
        R"({"text":"a","ids":[1],"pieces":[],"layers":1,"heads":1,"snapshots":0})",
        R"({"text":"a","ids":[1],"pieces":["a"],"layers":1,"heads":1,"snapshots":-1})",
        R"({"text":"a","ids":[1],"pieces":["a"],"layers":1,"heads":1,"snapshots":999})", R"({"text":1})", R"([)"}) {
    std::string b = "DRPROBE1";
    const uint32_t n = static_cast<uint32_t>(std::strlen(header_json));
    b.append(reinterpret_cast<const char*>(&n), 4);
    b += header_json;
    EXPECT_NE(error_of([&] { parse_probe(b, "p"); }), "") << header_json;
  }
}

// However long the run, the file stays within its stated bound; the first snapshot and the
// newest always stay, and the steps keep increasing.
TEST(ProbeFile, SizeIsBoundedAndTheRunStaysCovered) {
  auto r = tiny_probe(1000);
  EXPECT_LE(r.snapshots.size(), kMaxProbeSnapshots);
  EXPECT_GE(r.snapshots.size(), kMaxProbeSnapshots / 2);
  EXPECT_EQ(r.snapshots.front().step, 0);
  EXPECT_EQ(r.snapshots.back().step, 9990);
  for (size_t i = 1; i < r.snapshots.size(); ++i) EXPECT_GT(r.snapshots[i].step, r.snapshots[i - 1].step);
  EXPECT_LE(probe_bytes(r).size(), kMaxProbeFileBytes);
  EXPECT_NO_THROW(parse_probe(probe_bytes(r), "p"));
  // The newest step recorded again (an evaluation's, with its loss) replaces it; an earlier one is
  // not recorded; a resumed run forgets what is past its step.
  const auto before = r.snapshots.size();
  auto again = r.snapshots.back();
  again.val_loss = 1.5;
  add_snapshot(r, again);
  EXPECT_EQ(r.snapshots.size(), before);
  EXPECT_EQ(r.snapshots.back().val_loss, 1.5);
  auto earlier = r.snapshots[1];
  earlier.step -= 1;
  add_snapshot(r, earlier);
  EXPECT_EQ(r.snapshots.size(), before);
  EXPECT_EQ(r.snapshots.back().val_loss, 1.5);
  drop_after(r, 5000);
  EXPECT_LE(r.snapshots.back().step, 5000);
  // A model too large for even two snapshots has no room at all.
  ProbeRecord big = tiny_probe(0);
  big.layers = big.heads = 256;
  big.ids.assign(32, 1);
  EXPECT_LT(big.max_snapshots(), 2u);
}

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
