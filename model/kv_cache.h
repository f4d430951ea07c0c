// The KV cache: the keys and values of the positions a sequence has already seen, kept so that
// generation feeds one new token at a time instead of the whole sequence again.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dracarys {

// One layer's keys and values. Both attention paths use this layout; the reference path views
// it as [batch, heads, length, d_k].
struct LayerKVCache {
  torch::Tensor k, v;  // [batch·heads, context, d_k], filled up to `length`
  int64_t length = 0;

  // Appends the keys and values of T new positions ([batch·heads, T, d_k] each); the first call
  // allocates room for `context` positions. Throws c10::Error past the context.
  void append(const torch::Tensor& new_k, const torch::Tensor& new_v, int64_t context) {
    const int64_t T = new_k.size(1);
    make_room(T, new_k.size(0), new_k.size(2), new_k.options(), context);
    k.narrow(1, length, T).copy_(new_k);
    v.narrow(1, length, T).copy_(new_v);
    length += T;
  }
  // The same for one new position of one sequence, from plain arrays ([heads, d_k] floats each):
  // generation's fast step (model/decode_step.cpp). CPU float tensors only.
  void append_one(const float* new_k, const float* new_v, int64_t heads, int64_t dk, int64_t context) {
    make_room(1, heads, dk, torch::kFloat, context);
    TORCH_CHECK(k.size(0) == heads && k.is_contiguous() && k.scalar_type() == torch::kFloat, "KV cache layout");
    float* keys = k.data_ptr<float>();
    float* vals = v.data_ptr<float>();
    const int64_t room = k.size(1);  // positions each head's rows have space for
    for (int64_t h = 0; h < heads; ++h) {
      std::copy(new_k + h * dk, new_k + (h + 1) * dk, keys + (h * room + length) * dk);
      std::copy(new_v + h * dk, new_v + (h + 1) * dk, vals + (h * room + length) * dk);
    }
    ++length;
  }
  torch::Tensor keys() const { return k.narrow(1, 0, length); }    // [batch·heads, length, d_k]
  torch::Tensor values() const { return v.narrow(1, 0, length); }  // [batch·heads, length, d_k]

 private:
  // Checks that T more positions fit; the first call allocates [rows, context, d_k] for each.
  void make_room(int64_t T, int64_t rows, int64_t dk, const torch::TensorOptions& options, int64_t context) {
    TORCH_CHECK(length + T <= context, "KV cache overflow: ", length, " + ", T, " positions > context ", context);
    if (!k.defined()) {
      k = torch::empty({rows, context, dk}, options);
      v = torch::empty({rows, context, dk}, options);
    }
  }
};

// One LayerKVCache per decoder block; all blocks always hold the same number of positions.
struct KVCache {
  std::vector<LayerKVCache> layers;
  int64_t length() const { return layers.empty() ? 0 : layers.front().length; }
};

}  // namespace dracarys
