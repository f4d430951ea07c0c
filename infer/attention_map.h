// Attention maps: what each head of each layer attends to for one prompt, as the model
// computed it (eval mode, no dropout). Rendered as SVG, HTML or a text heatmap.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/transformer.h"

namespace dracarys {

struct AttentionMaps {
  std::vector<std::string> tokens;    // display text of each prompt token
  std::vector<torch::Tensor> layers;  // per layer: [heads, T, T] float on the CPU
};

// Runs the prompt through the model once and keeps every layer's attention weights.
// Prompts longer than the context keep their last tokens.
AttentionMaps compute_attention(Transformer& model, const Tokenizer& tok, const std::string& prompt);

// layer/head < 0 means all of them.
std::string render_svg(const AttentionMaps& maps, int layer = -1, int head = -1);
std::string render_html(const AttentionMaps& maps, int layer = -1, int head = -1);
// One layer and head as shade characters, wrapped to `width` columns.
std::string render_text(const AttentionMaps& maps, int layer, int head, int width = 80);

// Escapes text for XML/HTML content and attribute values (also drops characters XML forbids).
std::string xml_escape(const std::string& s);

}  // namespace dracarys
