#include "export/llama_model.h"

#include <cmath>
#include <stdexcept>

#include "checkpoint/output_files.h"
#include "model/rotary.h"

namespace dracarys {

namespace {

constexpr float kLayerNormEps = 1e-5f;  // LibTorch's LayerNorm default, which the model uses
constexpr char kMarkerKey[] = "dracarys.export";
constexpr char kModelfileHeader[] = "# ollama Modelfile written by dracarys-export\n";

// ggml's file types (general.file_type): what most matrices are stored as.
uint32_t file_type(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return 0;
    case GgmlType::kF16:
      return 1;
    case GgmlType::kQ8_0:
      return 7;
  }
  return 0;
}

torch::Tensor find(Transformer& model, const std::string& name) {
  const auto parameters = model->named_parameters();
  if (const auto* p = parameters.find(name)) return *p;
  const auto buffers = model->named_buffers();
  if (const auto* b = buffers.find(name)) return *b;
  throw std::logic_error("the model has no tensor " + name);
}

NamedTensor out(const std::string& name, const torch::Tensor& t) {
  return {name, t.detach().to(torch::kCPU, torch::kFloat32).contiguous()};
}

void add_block(Transformer& model, int64_t i, std::vector<NamedTensor>& tensors) {
  const std::string ours = "blocks." + std::to_string(i) + ".", theirs = "blk." + std::to_string(i) + ".";
  const std::pair<const char*, const char*> names[] = {
      {"ln_attn", "attn_norm"}, {"attn.qkv", "attn_qkv"}, {"attn.proj", "attn_output"},
      {"ln_ff", "ffn_norm"},    {"ff.up", "ffn_up"},      {"ff.down", "ffn_down"},
  };
  for (const auto& [from, to] : names) {
    tensors.push_back(out(theirs + to + ".weight", find(model, ours + from + ".weight")));
    tensors.push_back(out(theirs + to + ".bias", find(model, ours + from + ".bias")));
  }
}

void add_tokenizer(GgufWriter& w, const TokenizerModel& tokenizer) {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (const auto& p : tokenizer.pieces) {
    pieces.push_back(p.text);
    scores.push_back(p.score);
    types.push_back(p.type);  // sentencepiece's numbering is llama.cpp's
  }
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_strings("tokenizer.ggml.tokens", pieces);
  w.add_f32s("tokenizer.ggml.scores", scores);
  w.add_i32s("tokenizer.ggml.token_type", types);
  // dracarys trains with <unk> = 0, </s> = 1 and no BOS; </s> ends every line.
  w.add_u32("tokenizer.ggml.unknown_token_id", 0);
  w.add_u32("tokenizer.ggml.eos_token_id", 1);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_bool("tokenizer.ggml.add_eos_token", false);
  w.add_bool("tokenizer.ggml.add_space_prefix", false);
}

// llama.cpp's gpt2 and gptneox are LayerNorm, plain attention, GELU and plain logits.
void check_architecture(const ModelConfig& config) {
  const auto cannot_run = [](const std::string& what) {
    return std::invalid_argument("llama.cpp's gpt2 and gptneox architectures cannot run " + what +
                                 "; train without it to export (it stays an option of dracarys itself)");
  };
  if (config.qk_norm) throw cannot_run("normalised queries and keys (--qk-norm)");
  if (config.activation != Activation::Gelu) throw cannot_run("the relu2 activation (--activation relu2)");
  if (config.logit_softcap > 0) throw cannot_run("soft-capped logits (--logit-softcap)");
}

}  // namespace

std::string llama_architecture(const ModelConfig& config) {
  return config.positional == PositionalKind::Rotary ? "gptneox" : "gpt2";
}

std::vector<NamedTensor> llama_tensors(Transformer& model) {
  torch::NoGradGuard no_grad;
  const ModelConfig& c = model->config();
  check_architecture(c);
  const torch::Tensor embedding = find(model, "embed.weight");
  std::vector<NamedTensor> tensors;
  // The input side multiplies the looked-up row by √d_model; llama.cpp reads it as it is.
  tensors.push_back(out("token_embd.weight", embedding * std::sqrt(static_cast<double>(c.d_model))));
  if (model->adds_positions()) tensors.push_back(out("position_embd.weight", find(model, "pos.table")));
  for (int64_t i = 0; i < c.layers; ++i) add_block(model, i, tensors);
  tensors.push_back(out("output_norm.weight", find(model, "ln_final.weight")));
  tensors.push_back(out("output_norm.bias", find(model, "ln_final.bias")));
  tensors.push_back(out("output.weight", model->head_weight()));  // unscaled, even when tied
  return tensors;
}

void check_exportable(const ModelConfig& config, const TokenizerModel& tokenizer) {
  check_architecture(config);
  if (tokenizer.kind != TokenizerKind::kBpe)
    throw std::invalid_argument(
        "this checkpoint's tokenizer is unigram, which llama.cpp cannot reproduce: its sentencepiece tokenizer "
        "merges pieces by score, as BPE does, and would split text differently. Train with --tokenizer bpe "
        "(the default) to export");
  if (static_cast<int64_t>(tokenizer.pieces.size()) != config.vocab_size)
    throw std::invalid_argument("the checkpoint's tokenizer has " + std::to_string(tokenizer.pieces.size()) +
                                " pieces but its model " + std::to_string(config.vocab_size));
  if (tokenizer.pieces.size() < 2 || tokenizer.pieces[0].type != 2 || tokenizer.pieces[1].text != "</s>")
    throw std::invalid_argument(
        "the checkpoint's tokenizer does not have <unk> at 0 and </s> at 1, as dracarys "
        "trains it");
}

std::string llama_gguf(const ModelConfig& c, const TokenizerModel& tokenizer, const std::vector<NamedTensor>& tensors,
                       GgmlType type, const std::string& name) {
  check_exportable(c, tokenizer);
  GgufWriter w;
  const std::string arch = llama_architecture(c);
  w.add_string("general.architecture", arch);
  w.add_string(kMarkerKey, "1");  // recognised by is_exported_gguf; llama.cpp ignores it
  w.add_string("general.name", name);
  w.add_u32("general.file_type", file_type(type));
  w.add_u32(arch + ".context_length", static_cast<uint32_t>(c.context));
  w.add_u32(arch + ".embedding_length", static_cast<uint32_t>(c.d_model));
  w.add_u32(arch + ".feed_forward_length", static_cast<uint32_t>(c.d_ff));
  w.add_u32(arch + ".block_count", static_cast<uint32_t>(c.layers));
  w.add_u32(arch + ".attention.head_count", static_cast<uint32_t>(c.heads));
  w.add_f32(arch + ".attention.layer_norm_epsilon", kLayerNormEps);
  if (arch == "gptneox") {
    w.add_bool("gptneox.use_parallel_residual", false);  // x + attn(ln(x)), then + ffn(ln(·)): ours
    w.add_u32("gptneox.rope.dimension_count", static_cast<uint32_t>(c.head_dim()));  // every dimension turns
    w.add_f32("gptneox.rope.freq_base", static_cast<float>(kRotaryBase));
  }
  add_tokenizer(w, tokenizer);
  for (const auto& t : tensors) {
    std::vector<int64_t> ne(t.value.sizes().rbegin(), t.value.sizes().rend());  // ggml: row length first
    GgmlType as = ne.size() == 1 ? GgmlType::kF32 : type;
    if (as == GgmlType::kQ8_0 && ne[0] % kQ8BlockSize != 0) as = GgmlType::kF16;
    w.add_tensor(t.name, ne, as, t.value.data_ptr<float>());
  }
  return w.bytes();
}

std::string ollama_modelfile(const ModelConfig& config, const std::string& gguf_file_name) {
  return std::string(kModelfileHeader) + "FROM ./" + gguf_file_name +
         "\n"
         "# The model knows positions up to its context; llama.cpp stops at a position beyond it.\n"
         "PARAMETER num_ctx " +
         std::to_string(config.context) +
         "\n"
         "PARAMETER stop \"</s>\"\n"
         "# A completer, not a chat model: the prompt goes in as it is.\n"
         "TEMPLATE \"{{ .Prompt }}\"\n";
}

bool is_exported_gguf(const std::string& path) {
  const std::string head = file_head(path, 4096);
  return head.compare(0, 4, "GGUF") == 0 && head.find(kMarkerKey) != std::string::npos;
}

bool is_exported_modelfile(const std::string& path) { return file_head(path, 4096).rfind(kModelfileHeader, 0) == 0; }

}  // namespace dracarys
