// A dracarys model as one of llama.cpp's architectures, box by box: "gpt2" when its positions
// are a table added to the embeddings, "gptneox" when they are rotary (llama.cpp turns Q and K
// as model/rotary.h does: NeoX's halves, base 10000, every dimension; sequential residuals).
//
//   dracarys                                 GGUF tensor (llama.cpp's name)
//   token embedding × √d_model               token_embd          the scale folded into the table
//   positional encoding (sinusoid or learned) position_embd      the table itself (gpt2 only)
//   block N: ln_attn                          blk.N.attn_norm     weight and bias
//            attn.qkv (rows Q, K, V by head)  blk.N.attn_qkv      the layout llama.cpp splits
//            attn.proj                        blk.N.attn_output
//            ln_ff                            blk.N.ffn_norm
//            ff.up, GELU, ff.down             blk.N.ffn_up, blk.N.ffn_down
//   ln_final                                  output_norm
//   decoder head                              output              always written: a tied head is
//                                                                  the embedding without the scale
//
// A LibTorch Linear weight [out, in], row-major, is ggml's {in, out}: no transposes. The causal
// mask is not written (llama.cpp builds its own). The tokenizer goes out as llama.cpp's
// sentencepiece type ("llama"): pieces, scores and types, no BOS, no space prefix.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "data/tokenizer_model_check.h"
#include "export/gguf_file.h"
#include "model/transformer.h"

namespace dracarys {

// One tensor under its llama.cpp name, float32 and contiguous, in LibTorch's order of dimensions.
struct NamedTensor {
  std::string name;
  torch::Tensor value;
};

// "gpt2" or "gptneox": the llama.cpp architecture that runs this model.
std::string llama_architecture(const ModelConfig& config);

// The model's tensors as llama.cpp reads them, in the order above. (Throws
// std::invalid_argument, as check_exportable, for a model neither architecture can run.)
std::vector<NamedTensor> llama_tensors(Transformer& model);

// Throws std::invalid_argument naming what llama.cpp's gpt2, gptneox and their tokenizer cannot
// run: QK-norm, ReLU² or soft-capped logits (none of them in their graphs); a
// unigram tokenizer (llama.cpp's sentencepiece tokenizer merges pieces by score, as BPE does, so
// it splits text differently from a unigram model's Viterbi search), or a vocabulary that does
// not match the model.
void check_exportable(const ModelConfig& config, const TokenizerModel& tokenizer);

// The GGUF file: metadata, tokenizer and tensors. Matrices are stored as `type` (f32, f16 or
// Q8_0; a matrix whose rows Q8_0 cannot split into blocks of 32 falls back to f16); norms and
// biases stay f32, as llama.cpp's own converters write them. `name` is general.name.
std::string llama_gguf(const ModelConfig& config, const TokenizerModel& tokenizer,
                       const std::vector<NamedTensor>& tensors, GgmlType type, const std::string& name);

// An ollama Modelfile for `gguf_file_name` (in the same folder): the context, the end token as a
// stop, the prompt passed through as it is.
std::string ollama_modelfile(const ModelConfig& config, const std::string& gguf_file_name);

// Whether the file at `path` is one dracarys-export writes (a GGUF with our marker, or our
// Modelfile), so that writing over it destroys nothing of the user's.
bool is_exported_gguf(const std::string& path);
bool is_exported_modelfile(const std::string& path);

}  // namespace dracarys
