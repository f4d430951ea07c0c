#include "model/decode_weights.h"

#include <stdexcept>

#include "model/transformer.h"

namespace dracarys {

WeightFormat weight_format_from_string(const std::string& name) {
  if (name == "f32") return WeightFormat::kF32;
  if (name == "q8") return WeightFormat::kQ8;
  throw std::invalid_argument("unknown weight format '" + name + "' (f32 or q8)");
}

std::string to_string(WeightFormat format) { return format == WeightFormat::kQ8 ? "q8" : "f32"; }

namespace {

// The weights the one-token step multiplies by, in the order they are packed.
std::vector<torch::Tensor> product_weights(TransformerImpl& model) {
  const auto named = model.named_parameters();
  std::vector<torch::Tensor> weights;
  for (int64_t l = 0; l < model.config().layers; ++l)
    for (const char* name : {"attn.qkv", "attn.proj", "ff.up", "ff.down"})
      weights.push_back(named["blocks." + std::to_string(l) + "." + name + ".weight"]);
  weights.push_back(model.head_weight());
  return weights;
}

kernels::PackedMatrix pack(const torch::Tensor& W, WeightFormat format) {
  TORCH_CHECK(W.dim() == 2 && W.is_contiguous() && W.scalar_type() == torch::kFloat && W.device().is_cpu(),
              "the one-token step needs contiguous float weights on the CPU");
  const float* w = W.data_ptr<float>();
  return format == WeightFormat::kQ8 ? kernels::pack_q8(w, W.size(0), W.size(1))
                                     : kernels::pack_f32(w, W.size(0), W.size(1));
}

}  // namespace

std::shared_ptr<const DecodeWeights> pack_decode_weights(TransformerImpl& model, WeightFormat format) {
  auto packed = std::make_shared<DecodeWeights>();
  const auto weights = product_weights(model);
  for (size_t i = 0; i + 1 < weights.size(); i += 4)
    packed->blocks.push_back({pack(weights[i], format), pack(weights[i + 1], format), pack(weights[i + 2], format),
                              pack(weights[i + 3], format)});
  packed->head = pack(weights.back(), format);
  if (format == WeightFormat::kQ8) {  // written through the pointer: no version counter moves
    for (size_t i = 0; i + 1 < weights.size(); i += 4) {
      const auto& b = packed->blocks[i / 4];
      for (const auto& [matrix, tensor] : {std::pair{&b.qkv, weights[i]}, std::pair{&b.proj, weights[i + 1]},
                                           std::pair{&b.up, weights[i + 2]}, std::pair{&b.down, weights[i + 3]}})
        kernels::unpack_q8(*matrix, tensor.data_ptr<float>());
    }
    kernels::unpack_q8(packed->head, weights.back().data_ptr<float>());
  }
  packed->sources = weights;
  for (const auto& w : weights) packed->versions.push_back(w._version());
  return packed;
}

bool still_current(const DecodeWeights& packed) {
  for (size_t i = 0; i < packed.sources.size(); ++i)
    if (packed.sources[i]._version() != packed.versions[i]) return false;
  return true;
}

}  // namespace dracarys
