// Attention maps drawn: the weights of engine/attention_weights.h as SVG, HTML or a text heatmap.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "engine/attention_weights.h"

namespace dracarys {

// layer/head < 0 means all of them.
std::string render_svg(const AttentionMaps& maps, int layer = -1, int head = -1);
std::string render_html(const AttentionMaps& maps, int layer = -1, int head = -1);
// One layer and head as shade characters, wrapped to `width` columns.
std::string render_text(const AttentionMaps& maps, int layer, int head, int width = 80);

}  // namespace dracarys
