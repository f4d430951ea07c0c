// A checkpoint is untrusted input: its SHA-256 proves it is whole, not who wrote it. Crafted
// files with a valid hash are refused with one line, before anything large is allocated.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "checkpoint/checkpoint.h"
#include "checkpoint/tensor_file.h"
#include "cli_util.h"
#include "data/errors.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

using Sections = std::vector<std::pair<std::string, std::string>>;

// The sections of a checkpoint file, in order (the format of checkpoint/checkpoint.h).
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
std::string write_with_valid_hash(const TempDir& d, const std::string& name, const Sections& sections,
                                  uint32_t version = kCheckpointVersion) {
  std::string buf = "DRACARYS";
  auto put32 = [&](uint32_t v) { buf.append(reinterpret_cast<const char*>(&v), 4); };
  auto put64 = [&](uint64_t v) { buf.append(reinterpret_cast<const char*>(&v), 8); };
  put32(version);
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

// A real checkpoint with one section replaced by `edit` of its bytes.
std::string with_section(const TempDir& d, const std::string& base, const std::string& name, const std::string& which,
                         const std::function<void(std::string&)>& edit) {
  auto sections = read_sections(slurp(base));
  for (auto& [section, bytes] : sections)
    if (section == which) edit(bytes);
  return write_with_valid_hash(d, name, sections);
}

// The JSON header of a weights section, and where its data starts.
std::pair<nlohmann::json, size_t> weights_header(const std::string& bytes) {
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {nlohmann::json::parse(bytes.substr(8, n)), 8 + n};
}

// The weights section re-encoded with `edit` applied to its header (the data stays as it was).
std::string with_header(const std::string& bytes, const std::function<void(nlohmann::json&)>& edit) {
  auto [header, data_start] = weights_header(bytes);
  edit(header);
  const std::string text = header.dump();
  std::string out(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  return out + text + bytes.substr(data_start);
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
                 "checkpoint weights hold blocks.1.");
  // The base has a head of its own (the default): a config that ties it leaves a weight over.
  expect_refused(crafted(*dir_, base_, "tied.pt", [](auto& m) { m["model_config"]["tied_head"] = true; }),
                 "checkpoint weights hold head.weight, which its model config has no place for");
  // A config that claims more than the file holds fails the size check before anything is read.
  expect_refused(crafted(*dir_, base_, "wide.pt", [](auto& m) { m["model_config"]["d_ff"] = 4096; }),
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
  // A float where an integer belongs was converted (undefined behaviour for 1e30).
  refused(
      "huge.pt", [](auto& m) { m["train_options"]["batch_size"] = 1e30; }, "setting 'batch_size' has the wrong type");
  refused(
      "flag.pt", [](auto& m) { m["train_options"]["no_speakers"] = 1; }, "setting 'no_speakers' has the wrong type");
}

// A checkpoint from before an option existed resumes with the value its run had then (Muon's
// weight decay was 0, its Newton–Schulz five iterations), not with today's default.
TEST_F(UntrustedCheckpoint, SettingsAddedLaterResumeAsTheOldRunHadThem) {
  auto stored_options = [](const std::string& path) {
    for (const auto& [section, bytes] : read_sections(slurp(path)))
      if (section == "meta") return nlohmann::json::parse(bytes)["train_options"];
    return nlohmann::json();
  };
  ASSERT_EQ(stored_options(base_)["muon_weight_decay"], 0.1);  // today's default, stored
  const auto old = crafted(*dir_, base_, "old.pt", [](auto& m) {
    m["train_options"].erase("muon_weight_decay");
    m["train_options"].erase("muon_ns_steps");
  });
  const auto out = dir_->file("old-resumed.pt");
  auto r = run(*dir_, kTrain + " --resume " + old + " --max-steps 3 --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(stored_options(out)["muon_weight_decay"], 0.0);
  EXPECT_EQ(stored_options(out)["muon_ns_steps"], 5);
  r = run(*dir_, kTrain + " --resume " + old + " --max-steps 3 --muon-weight-decay 0.2 --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(stored_options(out)["muon_weight_decay"], 0.2);  // given now, it wins as any rate does
}

TEST_F(UntrustedCheckpoint, WeightRecordsAreCheckedAgainstTheBytesBeforeCopying) {
  // A record cut to 4 bytes loaded before, and greedy text then changed from run to run.
  std::string first;  // the first tensor's name
  const auto header = weights_header(read_sections(slurp(base_))[2].second).first;
  for (const auto& [name, entry] : header.items())
    if (first.empty() && name != "__metadata__") first = name;
  expect_refused(with_section(*dir_, base_, "short.pt", "model",
                              [&](std::string& b) {
                                b = with_header(b, [&](nlohmann::json& h) {
                                  auto& offsets = h[first]["data_offsets"];
                                  offsets[1] = offsets[0].get<uint64_t>() + 4;
                                });
                              }),
                 "not what its dtype and shape need");
  // Offsets far past the data (a storage offset of 2^31 was read out of bounds).
  expect_refused(with_section(*dir_, base_, "far.pt", "model",
                              [&](std::string& b) {
                                b = with_header(b, [&](nlohmann::json& h) {
                                  h[first]["data_offsets"] = {2147483648u, 2147483652u};
                                });
                              }),
                 "lies outside the data");
  expect_refused(
      with_section(*dir_, base_, "dtype.pt", "model",
                   [&](std::string& b) { b = with_header(b, [&](nlohmann::json& h) { h[first]["dtype"] = "F16"; }); }),
      "has a dtype other than F32");
  expect_refused(with_section(*dir_, base_, "header.pt", "model",
                              [](std::string& b) {
                                const uint64_t huge = uint64_t{1} << 40;
                                std::memcpy(b.data(), &huge, 8);
                              }),
                 "past the file or the limit");
  // A pickle nested a million deep crashed LibTorch's reader: weights are no longer pickles.
  expect_refused(with_section(*dir_, base_, "pickle.pt", "model",
                              [](std::string& b) { b = std::string(1000000, '(') + std::string(b.size(), 'x'); }),
                 "the checkpoint weights section has a header of");
}

TEST_F(UntrustedCheckpoint, TheTokenizerIsCheckedBeforeSentencepieceReadsIt) {
  // sentencepiece's normaliser read out of bounds on a crafted precompiled_charsmap: a model with
  // one is refused before sentencepiece sees it. (Field 3, the normaliser: name "identity" and a
  // 4-byte charsmap.)
  const std::string normalizer = std::string("\x0a\x08identity\x12\x04\xff\xff\xff\x7f", 16);
  expect_refused(with_section(*dir_, base_, "charsmap.pt", "tokenizer",
                              [&](std::string& b) {
                                b += "\x1a" + std::string(1, static_cast<char>(normalizer.size())) + normalizer;
                              }),
                 "carries a character map");
  expect_refused(with_section(*dir_, base_, "spmtrunc.pt", "tokenizer", [](std::string& b) { b.resize(b.size() - 3); }),
                 "the tokenizer model is not one dracarys writes");
  expect_refused(with_section(*dir_, base_, "spmjunk.pt", "tokenizer", [](std::string& b) { b = "\x08\x01junk"; }),
                 "the tokenizer model is not one dracarys writes");
  // A second unknown-token piece (field 1: piece "x", type 2): sentencepiece's "Internal: <unk>
  // is already defined" stays out of the message.
  const auto twice = with_section(*dir_, base_, "unk2.pt", "tokenizer",
                                  [](std::string& b) { b += std::string("\x0a\x05\x0a\x01x\x18\x02", 7); });
  expect_refused(twice, "the tokenizer model cannot be loaded: a piece is defined twice");
  const auto r = run(*dir_, kInfer + " -c " + twice + " -p 'jon snow:' --threads 1");
  EXPECT_EQ(r.err.find("Internal"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("already defined"), std::string::npos) << r.err;
}

TEST_F(UntrustedCheckpoint, VersionOneIsRefusedWithWhatToDo) {
  expect_refused(write_with_valid_hash(*dir_, "v1.pt", read_sections(slurp(base_)), 1),
                 "checkpoint format version 1 (written by an earlier dracarys) stores LibTorch archives");
}

// Random changes to each section of a real checkpoint, the hash recomputed as an attacker would,
// then loaded as the programs load it: every outcome is our error or a model whose tensors all
// have the shapes its config gives, never a crash.
TEST_F(UntrustedCheckpoint, MutatedSectionsEndInOurErrorOrAWholeModel) {
  const auto sections = read_sections(slurp(base_));
  std::mt19937_64 rng(2024);
  int refused = 0, loaded = 0;
  for (int round = 0; round < 400; ++round) {
    auto mutated = sections;
    auto& bytes = mutated[static_cast<size_t>(round) % mutated.size()].second;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 4) {
        case 0:
          bytes[at] = static_cast<char>(rng());  // a byte changed
          break;
        case 1:
          bytes.resize(at);  // cut short
          break;
        case 2:
          bytes.insert(at, std::string(1 + rng() % 8, static_cast<char>(rng())));  // bytes inserted
          break;
        default:
          bytes[at] ^= static_cast<char>(1u << (rng() % 8));  // a bit flipped
      }
    }
    const auto path = write_with_valid_hash(*dir_, "mutated.pt", mutated);
    try {
      auto ckpt = load_checkpoint(path);
      auto model = load_model(ckpt, torch::kCPU);
      auto tokenizer = load_tokenizer(ckpt);
      const Transformer fresh(ckpt.config);
      auto expected = fresh->named_parameters();
      for (const auto& p : model->named_parameters())
        ASSERT_EQ(p.value().sizes(), expected[p.key()].sizes()) << p.key();
      ++loaded;
    } catch (const CheckpointError&) {
      ++refused;
    } catch (const DataError&) {
      ++refused;
    } catch (const std::invalid_argument&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(refused + loaded, 400);
}

TEST_F(UntrustedCheckpoint, SpeakerListsAndHugeFilesAreBounded) {
  // 1.2 million speakers made the server idle at 554 MB: a list past the limit is refused.
  expect_refused(crafted(*dir_, base_, "speakers.pt",
                         [](auto& m) {
                           for (size_t i = 0; i <= kMaxSpeakers; ++i) m["speakers"]["s" + std::to_string(i)] = 1;
                         }),
                 "more than the limit of 65536", /*train_too=*/false);
  // A 6 GB file that is not a checkpoint was read whole before it was refused: under a 4 GB
  // address-space limit that read failed; the magic is now checked first.
  const auto big = dir_->file("big.bin");
  ASSERT_EQ(std::system(("truncate -s 6G " + big).c_str()), 0);
  expect_one_line_error(run(*dir_, "ulimit -v 4000000; " + kInfer + " -c " + big + " -p x --threads 1"),
                        "not a dracarys checkpoint");
  std::filesystem::remove(big);
}

namespace {

// The model section with the first float of tensor `name` set to `value`.
std::string with_value(const std::string& bytes, const std::string& name, float value) {
  auto [header, data_start] = weights_header(bytes);
  std::string out = bytes;
  const size_t at = data_start + header.at(name).at("data_offsets").at(0).get<size_t>();
  std::memcpy(out.data() + at, &value, sizeof value);
  return out;
}

}  // namespace

TEST_F(UntrustedCheckpoint, NonFiniteWeightsAreRefusedAndBuffersAreRebuilt) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  int n = 0;
  for (float bad : {nan, inf, -inf, 3e38f}) {
    const auto path = with_section(*dir_, base_, "bad" + std::to_string(n++) + ".pt", "model",
                                   [bad](std::string& b) { b = with_value(b, "embed.weight", bad); });
    expect_refused(path, "tensor embed.weight holds values that are not finite or beyond 1e6");
  }
  // The causal mask (and the rotary tables) come from the config, whatever the file says.
  const auto masked = with_section(*dir_, base_, "nanmask.pt", "model", [nan](std::string& b) {
    auto [header, start] = weights_header(b);
    for (const auto& [name, entry] : header.items())
      if (name.find("causal_mask") != std::string::npos || name.find("rotary") != std::string::npos)
        b = with_value(b, name, nan);
  });
  const std::string text = dir_->write("score.txt", "jon snow: winter is coming.\n");
  const auto clean = run(*dir_, kInfer + " -c " + base_ + " --score " + text + " --threads 1");
  const auto rebuilt = run(*dir_, kInfer + " -c " + masked + " --score " + text + " --threads 1");
  ASSERT_EQ(rebuilt.code, 0) << rebuilt.err;
  EXPECT_EQ(rebuilt.out, clean.out);
  EXPECT_EQ(rebuilt.out.find("nan"), std::string::npos) << rebuilt.out;
}

TEST_F(UntrustedCheckpoint, StoredSettingsThatAreNotAnObjectAreRefusedInOurWords) {
  for (const auto& value : {nlohmann::json(7), nlohmann::json("x"), nlohmann::json::array()}) {
    const auto path = crafted(*dir_, base_, "settings.pt", [&value](auto& m) { m["train_options"] = value; });
    const auto r = run(*dir_, kInfer + " -c " + path + " -p 'jon snow:' --threads 1");
    expect_one_line_error(r, "stored training settings are not a JSON object");
    EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
  }
  const auto flag = crafted(*dir_, base_, "flag.pt", [](auto& m) { m["train_options"]["no_speakers"] = "yes"; });
  expect_one_line_error(run(*dir_, kInfer + " -c " + flag + " -p 'jon snow:' --threads 1"),
                        "'no_speakers' is not true or false");
}
