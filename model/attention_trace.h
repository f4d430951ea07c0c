// Every box of one attention layer, as the reference path (model/attention.cpp) computed it:
// what the visual guide draws for one sentence, with the model's real numbers. Asking for a
// trace runs the reference whatever the model's kernels; the tensors are the ones the forward
// pass itself used, kept rather than recomputed.
//
// Shapes: B sequences, T positions of this call, T_keys the positions attended (T, or the
// cached ones too), H heads of d_k each.
#pragma once

#include <torch/torch.h>

namespace dracarys {

struct AttentionTrace {
  torch::Tensor residual;              // [B, T, d_model] the block's input: at layer 0, the position-aware embeddings
  torch::Tensor input;                 // [B, T, d_model] its layer norm, the copy that goes into Q, K and V
  torch::Tensor q, k, v;               // [B, H, T, d_k] the three linear layers' outputs, split into heads
  torch::Tensor q_normed, k_normed;    // [B, H, T, d_k] QK-norm only (undefined without it)
  torch::Tensor q_rotated, k_rotated;  // [B, H, T, d_k] rotary positions only (undefined otherwise)
  torch::Tensor scores;                // [B, H, T, T_keys] Q·Kᵀ
  torch::Tensor scaled;                // [B, H, T, T_keys] scores / √d_k
  torch::Tensor masked;                // [B, H, T, T_keys] scaled + the causal mask (-inf above the diagonal)
  torch::Tensor filter;                // [B, H, T, T_keys] softmax of each row: the attention filter
  torch::Tensor filtered;              // [B, H, T, d_k] filter · V
  torch::Tensor concat;                // [B, T, d_model] the heads side by side
  torch::Tensor output;                // [B, T, d_model] the output projection of concat
};

}  // namespace dracarys
