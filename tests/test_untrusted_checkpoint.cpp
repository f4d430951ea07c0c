// A checkpoint is untrusted input: its SHA-256 proves it is whole, not who wrote it. Crafted
// files with a valid hash are refused with one line, before anything large is allocated.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "common/checkpoint.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

using Sections = std::vector<std::pair<std::string, std::string>>;

// The sections of a checkpoint file, in order (the format of common/checkpoint.h).
Sections read_sections(const std::string& bytes) {
  Sections out;
  size_t pos = 8 + 4;
  uint32_t n = 0;
  std::memcpy(&n, bytes.data() + pos, 4);
  pos += 4;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t name_len = 0;
    std::memcpy(&name_len, bytes.data() + pos, 4);
    pos += 4;
    std::string name = bytes.substr(pos, name_len);
    pos += name_len;
    uint64_t size = 0;
    std::memcpy(&size, bytes.data() + pos, 8);
    pos += 8;
    out.emplace_back(name, bytes.substr(pos, size));
    pos += size;
  }
  return out;
}

// Writes sections as a checkpoint with a correct hash, as anyone can.
std::string write_with_valid_hash(const TempDir& d, const std::string& name, const Sections& sections) {
  std::string buf = "DRACARYS";
  auto put32 = [&](uint32_t v) { buf.append(reinterpret_cast<const char*>(&v), 4); };
  auto put64 = [&](uint64_t v) { buf.append(reinterpret_cast<const char*>(&v), 8); };
  put32(1);
  put32(static_cast<uint32_t>(sections.size()));
  for (const auto& [section, bytes] : sections) {
    put32(static_cast<uint32_t>(section.size()));
    buf += section;
    put64(bytes.size());
    buf += bytes;
  }
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(buf.data(), buf.size(), hash, &len, EVP_sha256(), nullptr);
  buf.append(reinterpret_cast<const char*>(hash), len);
  return d.write(name, buf);
}

// A real tiny checkpoint with its metadata changed by `edit`.
std::string crafted(const TempDir& d, const std::string& base, const std::string& name,
                    const std::function<void(nlohmann::json&)>& edit) {
  auto sections = read_sections(slurp(base));
  for (auto& [section, bytes] : sections)
    if (section == "meta") {
      auto meta = nlohmann::json::parse(bytes);
      edit(meta);
      bytes = meta.dump();
    }
  return write_with_valid_hash(d, name, sections);
}

std::string with_meta_text(const TempDir& d, const std::string& base, const std::string& name,
                           const std::string& meta) {
  auto sections = read_sections(slurp(base));
  for (auto& [section, bytes] : sections)
    if (section == "meta") bytes = meta;
  return write_with_valid_hash(d, name, sections);
}

class UntrustedCheckpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    const auto corpus = tiny_corpus(*dir_);
    base_ = dir_->file("base.pt");
    auto r =
        run(*dir_, kTrain + " --corpus " + corpus + kTiny + kVocab + " --val-share 0 --max-steps 2 --out " + base_);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  // Both programs refuse `path` with one line holding `needle`.
  void expect_refused(const std::string& path, const std::string& needle, bool train_too = true) {
    expect_one_line_error(run(*dir_, kInfer + " -c " + path + " -p 'jon snow:' --threads 1"), needle);
    if (train_too)
      expect_one_line_error(
          run(*dir_, kTrain + " --resume " + path + " --max-steps 4 --out " + dir_->file("resumed.pt")), needle);
  }

  static TempDir* dir_;
  static std::string base_;
};
TempDir* UntrustedCheckpoint::dir_ = nullptr;
std::string UntrustedCheckpoint::base_;

}  // namespace

TEST_F(UntrustedCheckpoint, TheUntouchedCheckpointLoads) {
  // The crafting itself changes nothing: re-written with the same sections, it still works.
  const auto same = crafted(*dir_, base_, "same.pt", [](nlohmann::json&) {});
  auto r = run(*dir_, kInfer + " -c " + same + " -p 'jon snow:' -n 3 --threads 1");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(UntrustedCheckpoint, AbsurdSizesAreRefusedBeforeAllocating) {
  expect_refused(crafted(*dir_, base_, "layers.pt", [](auto& m) { m["model_config"]["layers"] = 1000000000; }),
                 "layers is 1000000000, above the limit of 256");
  expect_refused(crafted(*dir_, base_, "vocab.pt", [](auto& m) { m["model_config"]["vocab_size"] = -5; }),
                 "vocab_size must be positive");
  // Within every bound, but the weights it implies are not in the file.
  expect_refused(crafted(*dir_, base_, "context.pt", [](auto& m) { m["model_config"]["context"] = 16384; }),
                 "but its model section holds only");
  expect_refused(crafted(*dir_, base_, "type.pt", [](auto& m) { m["model_config"]["d_model"] = 64.5; }),
                 "'d_model' must be a whole number");
}

TEST_F(UntrustedCheckpoint, ShapesMustMatchTheWeights) {
  // Fewer bytes than the real weights pass the size check; the shapes do not.
  expect_refused(crafted(*dir_, base_, "dff.pt", [](auto& m) { m["model_config"]["d_ff"] = 32; }),
                 "has shape [128, 64], but its model config needs [32, 64]");
  expect_refused(crafted(*dir_, base_, "layers1.pt", [](auto& m) { m["model_config"]["layers"] = 1; }),
                 "checkpoint weights hold blocks.1, which its model config has no place for");
  expect_refused(crafted(*dir_, base_, "untied.pt", [](auto& m) { m["model_config"]["tied_head"] = false; }),
                 "but its model section holds only");
  expect_refused(crafted(*dir_, base_, "vocab2.pt", [](auto& m) { m["model_config"]["vocab_size"] = 300; }),
                 "tokenizer has 400 tokens but its model has 300");
}

TEST_F(UntrustedCheckpoint, MetadataJsonIsBounded) {
  // A million nested arrays crashed both programs (stack overflow in the JSON library).
  expect_refused(with_meta_text(*dir_, base_, "deep.pt", std::string(1000000, '[') + std::string(1000000, ']')),
                 "nests JSON deeper than 32 levels");
  expect_refused(with_meta_text(*dir_, base_, "notjson.pt", "{\"model_config\": {"), "is not valid JSON (at byte");
  expect_refused(with_meta_text(*dir_, base_, "noconfig.pt", "{}"), "has no model config");
}

TEST_F(UntrustedCheckpoint, TrainingStateAndSettingsAreChecked) {
  const std::string resume = " --max-steps 4 --out " + dir_->file("resumed.pt");
  auto refused = [&](const std::string& name, const std::function<void(nlohmann::json&)>& edit,
                     const std::string& needle) {
    expect_one_line_error(run(*dir_, kTrain + " --resume " + crafted(*dir_, base_, name, edit) + resume), needle);
  };
  refused(
      "step.pt", [](auto& m) { m["state"]["step"] = -100; }, "'step' that is not a whole number");
  refused(
      "elapsed.pt", [](auto& m) { m["state"]["elapsed_s"] = "soon"; }, "'elapsed_s' that is not a finite");
  refused(
      "state.pt", [](auto& m) { m["state"] = 7; }, "training state is not a JSON object");
  refused(
      "lrtype.pt", [](auto& m) { m["train_options"]["lr"] = "fast"; }, "training setting 'lr' has the wrong type");
  refused(
      "lr.pt", [](auto& m) { m["train_options"]["lr"] = -1.0; }, "--lr must be");
  refused(
      "threads.pt", [](auto& m) { m["train_options"]["threads"] = 100000; }, "--threads must be");
}
