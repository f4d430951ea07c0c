// Attention drawn: the filters of engine/attention_weights.h as SVG, HTML or a text heatmap;
// the probe's filters across training (engine/probe.h) as a strip; one head's every box
// (engine/attention_boxes.h) for --explain.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "engine/attention_boxes.h"
#include "engine/attention_weights.h"
#include "engine/probe.h"

namespace dracarys {

// layer/head < 0 means all of them.
std::string render_svg(const AttentionMaps& maps, int layer = -1, int head = -1);
std::string render_html(const AttentionMaps& maps, int layer = -1, int head = -1);
// One layer and head as shade characters, wrapped to `width` columns.
std::string render_text(const AttentionMaps& maps, int layer, int head, int width = 80);

// One head's filter for the probe line at up to kProbeStripPanels evaluations, evenly spread,
// the first and the last included, side by side. Throws std::invalid_argument for a layer or
// head the file does not have.
constexpr size_t kProbeStripPanels = 8;
std::vector<size_t> probe_strip_snapshots(const ProbeRecord& record, size_t most);  // indices into snapshots
std::string render_probe_svg(const ProbeRecord& record, int layer, int head);
std::string render_probe_html(const ProbeRecord& record, int layer, int head);

// One head's every box, top to bottom in the guide's order (layer/head < 0: 0).
std::string render_boxes_svg(const TracedSequence& traced, int layer, int head);
std::string render_boxes_html(const TracedSequence& traced, int layer, int head);

}  // namespace dracarys
