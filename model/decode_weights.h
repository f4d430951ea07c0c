// The one-token step's weights (model/decode_step.cpp): each product's matrix packed once into
// the layout kernels::matmul_packed streams (model/systems/packed_matmul.h), as f32 or as int8.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/systems/packed_matmul.h"

namespace dracarys {

class TransformerImpl;

// How generation holds the product weights: as trained (f32), or as int8 with one scale per row
// (q8, like GGUF's Q8_0 but per row). --weights on dracarys-infer and dracarys-serve.
enum class WeightFormat { kF32, kQ8 };
WeightFormat weight_format_from_string(const std::string& name);  // "f32" or "q8"; throws std::invalid_argument
std::string to_string(WeightFormat format);

struct DecodeWeights {
  struct Block {
    kernels::PackedMatrix qkv;   // [3·d_model, d_model]
    kernels::PackedMatrix proj;  // [d_model, d_model]
    kernels::PackedMatrix up;    // [d_ff, d_model]
    kernels::PackedMatrix down;  // [d_model, d_ff]
  };
  std::vector<Block> blocks;   // one per decoder block
  kernels::PackedMatrix head;  // [vocab, d_model], the decoder head (the embedding when tied)
  // The weights packed (the model's own tensors, shared) and their version counters then: a
  // weight changed in place since (training's optimizer, between its samples) makes the packing
  // stale. Checked at every step, so it reads no module tree.
  std::vector<torch::Tensor> sources;
  std::vector<int64_t> versions;
};

// The model's product weights as they are now, packed in `format`. For q8 the model's own
// weights are then overwritten with what the int8 ones stand for (q·scale), so that forward()
// runs the same weights as the one-token step.
std::shared_ptr<const DecodeWeights> pack_decode_weights(TransformerImpl& model, WeightFormat format);

// Whether every weight `w` was packed from is unchanged.
bool still_current(const DecodeWeights& w);

}  // namespace dracarys
