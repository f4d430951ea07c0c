// dracarys-export: the GGUF format written by hand (checked against LibTorch and by reading it
// back), the gpt2 mapping, bad input, and the real llama.cpp running an exported model with our
// numbers (tests/llama/compare.mjs, through node-llama-cpp's prebuilt binaries).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "cli_util.h"
#include "engine/loaded_model.h"
#include "export/gguf_file.h"
#include "export/llama_model.h"
#include "test_util.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

const std::string kExport = std::string(DRACARYS_BIN_DIR) + "/dracarys-export";

template <class T>
T take(const std::string& bytes, size_t& at) {
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof v);
  at += sizeof v;
  return v;
}
std::string take_string(const std::string& bytes, size_t& at) {
  const auto n = take<uint64_t>(bytes, at);
  at += n;
  return bytes.substr(at - n, n);
}

}  // namespace

TEST(Gguf, HalfPrecisionRoundsAsLibTorchDoes) {
  torch::manual_seed(1);
  auto values = torch::randn({20000}) * torch::pow(2.0, torch::randint(-30, 20, {20000}).to(torch::kFloat));
  const float special[] = {0.0f,
                           -0.0f,
                           65504.0f,
                           65519.0f,
                           65520.0f,
                           1e9f,
                           5.96e-8f,
                           2.98e-8f,
                           2.99e-8f,
                           6.1e-5f,
                           1.0f + 1.0f / 2048,
                           1.0f + 3.0f / 2048,
                           std::numeric_limits<float>::infinity()};
  values = torch::cat({values, torch::tensor(std::vector<float>(std::begin(special), std::end(special)))});
  const auto half = values.to(torch::kHalf).view(torch::kShort);
  for (int64_t i = 0; i < values.numel(); ++i) {
    const float x = values[i].item<float>();
    ASSERT_EQ(fp16_bits(x), static_cast<uint16_t>(half[i].item<int16_t>())) << "x = " << x;
    ASSERT_EQ(fp16_bits(-x), static_cast<uint16_t>(half[i].item<int16_t>() ^ 0x8000)) << "x = " << -x;
  }
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float v = fp16_value(static_cast<uint16_t>(bits));
    if (std::isnan(v)) continue;
    ASSERT_EQ(fp16_bits(v), bits);
  }
}

TEST(Gguf, Q8BlocksHoldEachValueToHalfAStep) {
  torch::manual_seed(2);
  const auto x = torch::randn({64}) * 3;
  std::string bytes;
  append_q8_0(x.data_ptr<float>(), 64, bytes);
  ASSERT_EQ(bytes.size(), 2u * 34);
  for (int b = 0; b < 2; ++b) {
    uint16_t d_bits;
    std::memcpy(&d_bits, bytes.data() + b * 34, 2);
    const float d = fp16_value(d_bits);
    const float amax = x.slice(0, b * 32, b * 32 + 32).abs().max().item<float>();
    EXPECT_NEAR(d, amax / 127, amax / 127 / 1000);
    for (int j = 0; j < 32; ++j) {
      const auto q = static_cast<int8_t>(bytes[b * 34 + 2 + j]);
      EXPECT_LE(std::abs(q), 127);
      EXPECT_LE(std::fabs(d * q - x[b * 32 + j].item<float>()), d * 0.51f);
    }
  }
  std::string zeros;
  const std::vector<float> none(32, 0.0f);
  append_q8_0(none.data(), 32, zeros);
  EXPECT_EQ(zeros, std::string(34, '\0'));
}

TEST(Gguf, FileReadsBackAsWritten) {
  GgufWriter w;
  w.add_string("general.architecture", "gpt2");
  w.add_u32("gpt2.block_count", 3);
  w.add_strings("tokenizer.ggml.tokens", {"<unk>", "</s>"});
  const std::vector<float> a = {1, 2, 3}, b(64, 0.5f);
  w.add_tensor("a", {3}, GgmlType::kF32, a.data());
  w.add_tensor("b", {32, 2}, GgmlType::kF16, b.data());
  const std::string file = w.bytes();
  size_t at = 0;
  ASSERT_EQ(file.substr(0, 4), "GGUF");
  at = 4;
  EXPECT_EQ(take<uint32_t>(file, at), 3u);
  EXPECT_EQ(take<uint64_t>(file, at), 2u);  // tensors
  EXPECT_EQ(take<uint64_t>(file, at), 3u);  // metadata
  EXPECT_EQ(take_string(file, at), "general.architecture");
  EXPECT_EQ(take<uint32_t>(file, at), 8u);
  EXPECT_EQ(take_string(file, at), "gpt2");
  EXPECT_EQ(take_string(file, at), "gpt2.block_count");
  EXPECT_EQ(take<uint32_t>(file, at), 4u);
  EXPECT_EQ(take<uint32_t>(file, at), 3u);
  EXPECT_EQ(take_string(file, at), "tokenizer.ggml.tokens");
  EXPECT_EQ(take<uint32_t>(file, at), 9u);
  EXPECT_EQ(take<uint32_t>(file, at), 8u);
  EXPECT_EQ(take<uint64_t>(file, at), 2u);
  EXPECT_EQ(take_string(file, at), "<unk>");
  EXPECT_EQ(take_string(file, at), "</s>");
  uint64_t offsets[2];
  for (int t = 0; t < 2; ++t) {
    EXPECT_EQ(take_string(file, at), t == 0 ? "a" : "b");
    const auto dims = take<uint32_t>(file, at);
    EXPECT_EQ(dims, t == 0 ? 1u : 2u);
    for (uint32_t k = 0; k < dims; ++k) take<uint64_t>(file, at);
    EXPECT_EQ(take<uint32_t>(file, at), t == 0 ? 0u : 1u);
    offsets[t] = take<uint64_t>(file, at);
    EXPECT_EQ(offsets[t] % kGgufAlignment, 0u);
  }
  const size_t data = (at + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment;
  EXPECT_EQ(std::memcmp(file.data() + data + offsets[0], a.data(), 12), 0);
  size_t h = data + offsets[1];
  EXPECT_EQ(fp16_value(take<uint16_t>(file, h)), 0.5f);
  EXPECT_EQ(file.size(), data + offsets[1] + 128);
}

TEST(Gguf, Gpt2TensorsFoldTheEmbeddingScaleAndKeepAnUnscaledHead) {
  ModelConfig c;
  c.layers = 2, c.heads = 2, c.d_model = 64, c.d_ff = 128, c.context = 16, c.vocab_size = 50;
  Transformer model(c);
  const auto tensors = llama_tensors(model);
  ASSERT_EQ(tensors.size(), 2u + 12 * 2 + 3);
  EXPECT_EQ(tensors[0].name, "token_embd.weight");
  EXPECT_TRUE(torch::allclose(tensors[0].value, model->named_parameters()["embed.weight"] * 8.0));
  EXPECT_EQ(tensors.back().name, "output.weight");
  EXPECT_TRUE(torch::equal(tensors.back().value, model->named_parameters()["embed.weight"]));
  EXPECT_EQ(tensors[1].name, "position_embd.weight");
  EXPECT_EQ(tensors[1].value.sizes(), torch::IntArrayRef({16, 64}));
  EXPECT_EQ(tensors[4].name, "blk.0.attn_qkv.weight");
  EXPECT_EQ(tensors[4].value.sizes(), torch::IntArrayRef({192, 64}));  // ggml {64, 192}
  EXPECT_EQ(llama_architecture(c), "gpt2");
  {
    ModelConfig rotary = c;
    rotary.positional = PositionalKind::Rotary;
    Transformer turned(rotary);
    const auto neox = llama_tensors(turned);
    EXPECT_EQ(llama_architecture(rotary), "gptneox");
    EXPECT_EQ(neox.size(), tensors.size() - 1);  // no position table
    for (const auto& t : neox) EXPECT_NE(t.name, "position_embd.weight");
  }

  TokenizerModel tok;
  tok.kind = TokenizerKind::kBpe;
  tok.pieces = {{"<unk>", 0, 2}, {"</s>", 0, 3}};
  for (int i = 2; i < 50; ++i) tok.pieces.push_back({"p" + std::to_string(i), -float(i), 1});
  const std::string gguf = llama_gguf(c, tok, tensors, GgmlType::kQ8_0, "m");
  EXPECT_EQ(gguf.substr(0, 4), "GGUF");
  tok.kind = TokenizerKind::kUnigram;
  try {
    check_exportable(c, tok);
    ADD_FAILURE() << "a unigram tokenizer was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unigram"), std::string::npos);
  }
  tok.kind = TokenizerKind::kBpe;
  // What llama.cpp's gpt2 cannot run is refused by name; zero_init changes only the start.
  auto refused_for = [&](ModelConfig m, const std::string& needle) {
    try {
      check_exportable(m, tok);
      ADD_FAILURE() << "exported a model with " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  ModelConfig m = c;
  m.positional = PositionalKind::Rotary;
  EXPECT_NO_THROW(check_exportable(m, tok));  // gptneox runs it
  m = c, m.qk_norm = true;
  refused_for(m, "qk-norm");
  m = c, m.activation = Activation::Relu2;
  refused_for(m, "relu2");
  m = c, m.logit_softcap = 30;
  refused_for(m, "logit-softcap");
  m = c, m.zero_init = true;
  EXPECT_NO_THROW(check_exportable(m, tok));
  tok.pieces.pop_back();
  EXPECT_THROW(check_exportable(c, tok), std::invalid_argument);
}

TEST(Export, BadInputIsOneLineErrorAndNothingIsOverwritten) {
  TempDir d;
  const std::string corpus = tiny_corpus(d);
  d.write("junk.pt", "not a checkpoint at all");
  expect_one_line_error(run(d, kExport + " -c " + d.file("junk.pt") + " -o " + d.file("m.gguf")), "junk.pt");
  EXPECT_FALSE(std::filesystem::exists(d.file("m.gguf")));
  expect_one_line_error(run(d, kExport + " -c " + d.file("junk.pt")), "--out");
  expect_one_line_error(run(d, kExport + " -c " + d.file("junk.pt") + " -o x.gguf --type q4"), "--type");

  const std::string sample = std::string(DRACARYS_SOURCE_DIR) + "/data/sample/westeros.txt";
  ASSERT_EQ(run(d, kTrain + " --corpus " + sample + " --out " + d.file("u.pt") + kTiny + kVocab +
                       " --tokenizer unigram --max-steps 2")
                .code,
            0);
  expect_one_line_error(run(d, kExport + " -c " + d.file("u.pt") + " -o " + d.file("u.gguf")), "unigram");
  EXPECT_FALSE(std::filesystem::exists(d.file("u.gguf")));

  ASSERT_EQ(
      run(d, kTrain + " --corpus " + corpus + " --out " + d.file("b.pt") + kTiny + kVocab + " --max-steps 2").code, 0);
  const std::string notes = d.write("notes.gguf", "my own notes"), modelfile = d.write("b.Modelfile", "mine");
  expect_one_line_error(run(d, kExport + " -c " + d.file("b.pt") + " -o " + notes), "--out");
  EXPECT_EQ(slurp(notes), "my own notes");
  expect_one_line_error(run(d, kExport + " -c " + d.file("b.pt") + " -o " + d.file("b.gguf")), "--modelfile");
  EXPECT_EQ(slurp(modelfile), "mine");
  expect_one_line_error(run(d, kExport + " -c " + d.file("b.pt") + " -o " + d.file("b.pt")), "--out");
  // Our own outputs are replaced: the second export writes over the first.
  ASSERT_EQ(run(d, kExport + " -c " + d.file("b.pt") + " -o " + d.file("c.gguf")).code, 0);
  const auto r = run(d, kExport + " -c " + d.file("b.pt") + " -o " + d.file("c.gguf") + " --type f16");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(slurp(d.file("c.Modelfile")).find("PARAMETER num_ctx 64"), std::string::npos);
}

namespace {

// What dracarys computes, for compare.mjs: each line's tokens and, for the first `with_logprobs`
// lines, every position's log-probabilities; and greedy completions from dracarys-infer.
nlohmann::json reference_numbers(const TempDir& d, const std::string& ckpt, const std::vector<std::string>& lines,
                                 size_t with_logprobs) {
  auto m = load_for_inference(ckpt, torch::kCPU);
  const int64_t context = m.model->config().context;
  torch::NoGradGuard no_grad;
  nlohmann::json ref = {{"lines", nlohmann::json::array()}, {"greedy", nlohmann::json::array()}};
  for (size_t i = 0; i < lines.size(); ++i) {
    auto ids = m.tokenizer.encode(lines[i]);
    if (static_cast<int64_t>(ids.size()) > context) ids.resize(context);
    nlohmann::json logprobs = nlohmann::json::array();
    if (i < with_logprobs) {
      const auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
      const auto lp = torch::log_softmax(m.model->forward(x), -1)[0].contiguous();
      for (int64_t p = 0; p < lp.size(0); ++p)
        logprobs.push_back(std::vector<float>(lp[p].data_ptr<float>(), lp[p].data_ptr<float>() + lp.size(1)));
    }
    ref["lines"].push_back({{"text", lines[i]}, {"tokens", ids}, {"logprobs", logprobs}});
  }
  for (size_t i = 0; i < lines.size() && ref["greedy"].size() < 6; i += 7) {
    const std::string prompt = lines[i].substr(0, lines[i].find(':') + 6);
    auto r = run(d, kInfer + " -c " + ckpt + " --greedy -n 20 -p '" + prompt + "'");
    if (r.code != 0 || prompt.find('\'') != std::string::npos) continue;
    while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
    ref["greedy"].push_back({{"prompt", prompt}, {"max_new_tokens", 20}, {"text", r.out}});
  }
  return ref;
}

nlohmann::json run_in_llama_cpp(const TempDir& d, const std::string& gguf, const std::string& reference) {
  const auto r =
      run(d, "node " + std::string(DRACARYS_SOURCE_DIR) + "/tests/llama/compare.mjs " + gguf + " " + reference);
  EXPECT_EQ(r.code, 0) << r.err;
  const auto json = nlohmann::json::parse(r.out.substr(r.out.rfind("\n{") + 1), nullptr, false);
  EXPECT_TRUE(json.is_object()) << r.out << r.err;
  return json.is_object() ? json : nlohmann::json{{"max_abs_diff", 1e9}};
}

// The same tensors with K and V swapped in the first block: a plausible mistake an export makes.
void write_broken_export(const std::string& ckpt, const std::string& out) {
  auto m = load_for_inference(ckpt, torch::kCPU);
  auto tensors = llama_tensors(m.model);
  const int64_t d_model = m.model->config().d_model;
  for (auto& t : tensors)
    if (t.name.rfind("blk.0.attn_qkv.", 0) == 0) {
      auto k = t.value.narrow(0, d_model, d_model).clone();
      t.value.narrow(0, d_model, d_model).copy_(t.value.narrow(0, 2 * d_model, d_model));
      t.value.narrow(0, 2 * d_model, d_model).copy_(k);
    }
  std::ofstream(out, std::ios::binary) << llama_gguf(m.model->config(), read_tokenizer_model(m.tokenizer.bytes()),
                                                     tensors, GgmlType::kF32, "broken");
}

}  // namespace

TEST(Export, LlamaCppRunsTheExportWithOurNumbers) {
  const std::string modules = std::string(DRACARYS_SOURCE_DIR) + "/tests/llama/node_modules/node-llama-cpp";
  TempDir d;
  if (run(d, "command -v node").code != 0 || !std::filesystem::exists(modules))
    DRACARYS_SKIP_MISSING("Node or tests/llama's npm package node-llama-cpp");
  const std::string corpus = std::string(DRACARYS_SOURCE_DIR) + "/data/sample/westeros.txt", ckpt = d.file("m.pt");
  // First llama.cpp's gpt2: a sinusoidal table, a tied head (the previous recipe).
  auto r = run(d, kTrain + " --corpus " + corpus + " --out " + ckpt + kTiny + kVocab +
                      " --max-steps 200 --positions sinusoidal --tied-head --optimizer adamw --schedule cosine");
  ASSERT_EQ(r.code, 0) << r.err;

  // Every line of the corpus, and text that exercises spaces, digits, accents and bytes.
  std::vector<std::string> lines;
  std::istringstream text(slurp(corpus));
  for (std::string l; std::getline(text, l);) lines.push_back(l);
  for (const char* odd : {"  two  spaces,   three", "digits 1234567 and 3.14", "\xc3\xa9migr\xc3\xa9 na\xc3\xafve",
                          "a dragon \xf0\x9f\x90\x89 and \xe2\x80\x9cquotes\xe2\x80\x9d", "tab\there", "</s> <unk>"})
    lines.push_back(odd);
  std::ofstream(d.file("reference.json")) << reference_numbers(d, ckpt, lines, 40).dump();

  for (const std::string type : {"f32", "f16", "q8_0"}) {
    r = run(d, kExport + " -c " + ckpt + " -o " + d.file(type + ".gguf") + " --type " + type);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  const auto f32 = run_in_llama_cpp(d, d.file("f32.gguf"), d.file("reference.json"));
  EXPECT_EQ(f32["tokenized_alike"], lines.size()) << f32.dump();
  EXPECT_GT(f32["compared"].get<int64_t>(), 40 * 10);
  EXPECT_LE(f32["max_abs_diff"].get<double>(), 1e-2) << f32.dump();
  EXPECT_GE(f32["greedy_total"].get<int>(), 5);
  EXPECT_EQ(f32["greedy_alike"], f32["greedy_total"]) << f32.dump();
  std::cout << "llama.cpp f32: " << f32.dump() << "\n";
  // Stated tolerances for the smaller types (their held-out bits per character are in the README).
  const auto f16 = run_in_llama_cpp(d, d.file("f16.gguf"), d.file("reference.json"));
  EXPECT_LE(f16["max_abs_diff"].get<double>(), 5e-2) << f16.dump();
  const auto q8 = run_in_llama_cpp(d, d.file("q8_0.gguf"), d.file("reference.json"));
  EXPECT_LE(q8["max_abs_diff"].get<double>(), 0.25) << q8.dump();
  std::cout << "llama.cpp f16 max |diff| " << f16["max_abs_diff"] << ", q8_0 " << q8["max_abs_diff"] << "\n";

  // A broken export must fail the check that the correct one passes.
  write_broken_export(ckpt, d.file("broken.gguf"));
  const auto broken = run_in_llama_cpp(d, d.file("broken.gguf"), d.file("reference.json"));
  EXPECT_GT(broken["max_abs_diff"].get<double>(), 1e-2) << broken.dump();
  std::cout << "llama.cpp with K and V swapped: max |diff| " << broken["max_abs_diff"] << ", greedy alike "
            << broken["greedy_alike"] << " of " << broken["greedy_total"] << "\n";

  // Rotary positions go out as llama.cpp's gptneox, which turns Q and K as dracarys does.
  const std::string rope = d.file("rope.pt");
  r = run(d, kTrain + " --corpus " + corpus + " --out " + rope + kTiny + kVocab +
                 " --max-steps 200 --positions rope --optimizer muon");
  ASSERT_EQ(r.code, 0) << r.err;
  std::ofstream(d.file("rope.json")) << reference_numbers(d, rope, lines, 40).dump();
  r = run(d, kExport + " -c " + rope + " -o " + d.file("rope.gguf"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("architecture gptneox"), std::string::npos) << r.err;
  r = run(d, kExport + " -c " + ckpt + " -o " + d.file("check.gguf"));
  EXPECT_NE(r.err.find("architecture gpt2"), std::string::npos) << r.err;
  const auto neox = run_in_llama_cpp(d, d.file("rope.gguf"), d.file("rope.json"));
  EXPECT_EQ(neox["tokenized_alike"], lines.size()) << neox.dump();
  EXPECT_LE(neox["max_abs_diff"].get<double>(), 1e-2) << neox.dump();
  EXPECT_EQ(neox["greedy_alike"], neox["greedy_total"]) << neox.dump();
  std::cout << "llama.cpp gptneox (rotary) f32: " << neox.dump() << "\n";
}
