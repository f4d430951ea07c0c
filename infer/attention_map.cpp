#include "infer/attention_map.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "data/text.h"

namespace dracarys {

namespace {

// White (0) to deep blue (1), perceptually even enough for a heatmap.
std::string colour(float w) {
  w = std::clamp(w, 0.0f, 1.0f);
  const float g = std::pow(w, 0.6f);
  auto mix = [&](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * g)); };
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", mix(255, 8), mix(255, 48), mix(255, 107));
  return buf;
}

void check_selection(const AttentionMaps& m, int layer, int head) {
  if (m.layers.empty()) throw std::invalid_argument("no attention to draw");
  if (layer >= static_cast<int>(m.layers.size()))
    throw std::invalid_argument("--layer " + std::to_string(layer) + " does not exist: the model has " +
                                std::to_string(m.layers.size()) + " layers (0-based)");
  if (head >= static_cast<int>(m.layers[0].size(0)))
    throw std::invalid_argument("--head " + std::to_string(head) + " does not exist: the model has " +
                                std::to_string(m.layers[0].size(0)) + " heads (0-based)");
}

// Shortens a label to at most n characters (code points), marking the cut with "…".
std::string elide(const std::string& s, size_t n) {
  if (count_chars(s) <= n) return s;
  std::string out;
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && ++chars > n - 1) break;
    out.push_back(s[i]);
  }
  return out + "\xE2\x80\xA6";
}

// Escapes text for XML/HTML content and attribute values (also drops characters XML forbids).
std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        if (c < 0x20 && c != '\t')
          out += "\xEF\xBF\xBD";  // XML 1.0 forbids most control characters
        else
          out.push_back(static_cast<char>(c));
    }
  }
  return valid_utf8(out) ? out : "\xEF\xBF\xBD";
}

// The legend: the colour scale from 0 to 1, and what the hatched cells mean.
void write_legend(std::ostringstream& s, double top) {
  s << "<g class=\"legend\" transform=\"translate(0," << top
    << ")\"><text x=\"10\" y=\"18\" font-size=\"12\">attention weight</text>"
    << "<rect x=\"120\" y=\"7\" width=\"200\" height=\"14\" fill=\"url(#scale)\" stroke=\"#888\"/>"
    << "<text x=\"116\" y=\"34\" font-size=\"10\">0</text><text x=\"216\" y=\"34\" font-size=\"10\">0.5</text>"
    << "<text x=\"316\" y=\"34\" font-size=\"10\">1</text>"
    << "<rect x=\"340\" y=\"7\" width=\"14\" height=\"14\" fill=\"url(#masked)\" stroke=\"#888\"/>"
    << "<text x=\"358\" y=\"18\" font-size=\"11\">masked (future)</text>"
    << "<text x=\"10\" y=\"50\" font-size=\"10\">rows: query tokens; columns: key tokens</text></g>\n";
}

}  // namespace

namespace {

// One square panel of a filter: row q is query q's weights over the keys (the future masked).
struct Panel {
  std::string title;       // "layer 1, head 2" or "step 300"
  std::string attributes;  // the <g>'s data-* attributes
  torch::Tensor weights;   // [T, T] float on the CPU
};

// The cells of one panel, each with its numbers in data-* and a <title> to hover.
void write_cells(std::ostringstream& s, const Panel& panel, const std::vector<std::string>& tokens, double gx,
                 double gy, double cell) {
  const int T = static_cast<int>(tokens.size());
  const float* p = panel.weights.data_ptr<float>();
  for (int q = 0; q < T; ++q) {
    for (int k = 0; k < T; ++k) {
      const bool masked = k > q;
      s << "<rect x=\"" << gx + cell * k << "\" y=\"" << gy + cell * q << "\" width=\"" << cell << "\" height=\""
        << cell << "\" fill=\"" << (masked ? std::string("url(#masked)") : colour(p[q * T + k])) << "\"";
      if (masked) {
        s << " class=\"masked\"/>";
        continue;
      }
      s.precision(6);
      s << " data-q=\"" << q << "\" data-k=\"" << k << "\" data-w=\"" << p[q * T + k] << "\"><title>query " << q << " "
        << xml_escape(tokens[q]) << " → key " << k << " " << xml_escape(tokens[k]) << ": " << p[q * T + k]
        << "</title></rect>";
      s.precision(2);
    }
    s << "\n";
  }
}

// Panels in rows, under a heading and the legend: the attention maps and the probe's strip.
std::string panels_svg(const std::vector<std::string>& tokens, const std::string& heading,
                       const std::vector<std::vector<Panel>>& rows) {
  const int T = static_cast<int>(tokens.size());
  size_t columns = 0;
  for (const auto& row : rows) columns = std::max(columns, row.size());
  // Cells shrink as prompts grow so a panel stays about 300-400 px wide; labels follow.
  const double cell = std::clamp(360.0 / T, 4.0, 22.0);
  const double font = std::clamp(cell * 0.75, 5.0, 12.0);
  const double label = std::min(110.0, font * 9);
  const double grid = cell * T, panel_w = label + grid + 20, panel_h = label + grid + 40;
  const double heading_h = 26, legend_h = heading_h + 60;
  const double width = std::max(panel_w * columns, 420.0), height = legend_h + panel_h * rows.size();
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 "
    << width << " " << height << "\" font-family=\"sans-serif\">\n"
    << "<defs><pattern id=\"masked\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\">"
       "<rect width=\"4\" height=\"4\" fill=\"#e4e4e4\"/><path d=\"M0,4 L4,0\" stroke=\"#b0b0b0\" "
       "stroke-width=\"0.8\"/>"
       "</pattern>\n<linearGradient id=\"scale\">";
  for (int i = 0; i <= 10; ++i) s << "<stop offset=\"" << i * 10 << "%\" stop-color=\"" << colour(i / 10.0f) << "\"/>";
  s << "</linearGradient></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  // Heading: what the picture shows, so that a saved file says it.
  s << "<text class=\"heading\" x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">"
    << xml_escape(elide(heading, static_cast<size_t>(std::max(40.0, width / 8 - 10)))) << "</text>\n";
  write_legend(s, heading_h);
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const auto& panel = rows[r][c];
      const double x0 = panel_w * c, y0 = legend_h + panel_h * r, gx = x0 + label, gy = y0 + label + 20;
      s << "<g class=\"panel\" " << panel.attributes << ">\n<text x=\"" << gx + grid / 2 << "\" y=\"" << y0 + 14
        << "\" font-size=\"13\" font-weight=\"bold\" text-anchor=\"middle\">" << xml_escape(panel.title) << "</text>\n";
      for (int t = 0; t < T; ++t) {
        const std::string tokn = xml_escape(elide(tokens[t], 12));
        s << "<text x=\"" << gx - 3 << "\" y=\"" << gy + cell * (t + 0.7) << "\" font-size=\"" << font
          << "\" text-anchor=\"end\">" << tokn << "</text>";
        s << "<text transform=\"translate(" << gx + cell * (t + 0.7) << "," << gy - 3 << ") rotate(-60)\" font-size=\""
          << font << "\">" << tokn << "</text>\n";
      }
      write_cells(s, panel, tokens, gx, gy, cell);
      s << "<rect x=\"" << gx << "\" y=\"" << gy << "\" width=\"" << grid << "\" height=\"" << grid
        << "\" fill=\"none\" stroke=\"#666\"/>\n</g>\n";
    }
  }
  s << "</svg>\n";
  return s.str();
}

// An SVG inside a page that shows each cell's <title> where the mouse is.
std::string html_page(const std::string& title, const std::string& intro, const std::string& svg) {
  std::ostringstream s;
  s << "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
    << "<title>" << xml_escape(title) << "</title>\n"
    << "<style>body{font-family:sans-serif;margin:16px}#info{height:1.4em;font-family:monospace}"
       "rect[data-w]:hover,rect[data-v]:hover{stroke:#d00;stroke-width:1.5}svg{max-width:100%;height:auto}</style>\n"
       "</head>\n<body>\n"
    << intro << "<p id=\"info\">Hover a cell to see its numbers.</p>\n"
    << svg
    << "<script>//<![CDATA[\n"
       "document.querySelectorAll('rect[data-w],rect[data-v]').forEach(function(r){r.addEventListener('mouseenter',"
       "function(){var t=r.querySelector('title');document.getElementById('info').textContent=t?t.textContent:'';});"
       "});\n//]]></script>\n</body>\n</html>\n";
  return s.str();
}

}  // namespace

std::string render_svg(const AttentionMaps& m, int layer, int head) {
  check_selection(m, layer, head);
  const int L = static_cast<int>(m.layers.size()), H = static_cast<int>(m.layers[0].size(0));
  std::vector<std::vector<Panel>> rows;
  for (int l = 0; l < L; ++l) {
    if (layer >= 0 && l != layer) continue;
    rows.emplace_back();
    for (int h = 0; h < H; ++h)
      if (head < 0 || h == head)
        rows.back().push_back({"layer " + std::to_string(l) + ", head " + std::to_string(h),
                               "data-layer=\"" + std::to_string(l) + "\" data-head=\"" + std::to_string(h) + "\"",
                               m.layers[l][h]});
  }
  return panels_svg(m.tokens, "Attention filters (" + std::to_string(m.tokens.size()) + " tokens): " + m.text, rows);
}

std::string render_html(const AttentionMaps& m, int layer, int head) {
  std::ostringstream intro;
  intro << "<h1>Attention filters</h1>\n<p>Prompt (" << m.tokens.size() << " tokens): <code>" << xml_escape(m.text)
        << "</code></p>\n<p>Each panel is one head of one layer: row <i>q</i> shows how much the query token <i>q</i> "
           "draws from each key token at or before it. Hatched cells are the future, masked out.</p>\n";
  return html_page("dracarys attention: " + elide(m.text, 60), intro.str(), render_svg(m, layer, head));
}

std::vector<size_t> probe_strip_snapshots(const ProbeRecord& record, size_t most) {
  const size_t n = record.snapshots.size();
  std::vector<size_t> picked;
  if (n == 0) return picked;
  if (n <= most) {
    for (size_t i = 0; i < n; ++i) picked.push_back(i);
    return picked;
  }
  for (size_t i = 0; i < most; ++i) picked.push_back(i * (n - 1) / (most - 1));  // the first and the last included
  return picked;
}

std::string render_probe_svg(const ProbeRecord& record, int layer, int head) {
  if (layer < 0 || layer >= record.layers || head < 0 || head >= record.heads)
    throw std::invalid_argument("--layer " + std::to_string(layer) + " --head " + std::to_string(head) +
                                " is not in the probe file's " + std::to_string(record.layers) + " layers × " +
                                std::to_string(record.heads) + " heads (0-based)");
  const int64_t T = record.tokens();
  std::vector<Panel> strip;
  for (size_t i : probe_strip_snapshots(record, kProbeStripPanels)) {
    const auto& snap = record.snapshots[i];
    const float* w = snap.filters.data() + (layer * record.heads + head) * T * T;
    std::string title = "step " + std::to_string(snap.step);
    if (!std::isnan(snap.val_loss)) title += fmt::format(" (loss {:.2f})", snap.val_loss);
    strip.push_back({title, "data-step=\"" + std::to_string(snap.step) + "\"",
                     torch::from_blob(const_cast<float*>(w), {T, T}, torch::kFloat).clone()});
  }
  return panels_svg(
      record.pieces,
      fmt::format("The filters forming: layer {}, head {} over training, for: {}", layer, head, record.text), {strip});
}

std::string render_probe_html(const ProbeRecord& record, int layer, int head) {
  std::ostringstream intro;
  intro << "<h1>The filters forming</h1>\n<p>Layer " << layer << ", head " << head
        << "'s attention filter for the probe line <code>" << xml_escape(record.text)
        << "</code>, as training recorded it at its evaluations: random numbers at first, then meaningful ones. Row "
           "<i>q</i> shows how much query token <i>q</i> draws from each token at or before it.</p>\n";
  return html_page("dracarys: the filters forming", intro.str(), render_probe_svg(record, layer, head));
}

namespace {

// Signed numbers: blue below 0, white at 0, red above, scaled by the box's largest magnitude.
std::string diverging(float v, float scale) {
  const float g = std::pow(std::min(1.0f, std::abs(v) / scale), 0.6f);
  auto mix = [&](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * g)); };
  char buf[8];
  if (v >= 0)
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", mix(255, 178), mix(255, 24), mix(255, 43));
  else
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", mix(255, 33), mix(255, 102), mix(255, 172));
  return buf;
}

std::string axis_label(const std::string& kind, int i, const std::vector<std::string>& tokens) {
  const bool token = kind.size() >= 5 && kind.compare(kind.size() - 5, 5, "token") == 0;
  return kind + " " + std::to_string(i) + (token ? " " + tokens[i] : "");
}

// One box: its heading, its sentence, and its matrix as a heat map; returns the height used.
double write_box(std::ostringstream& s, const AttentionBox& b, size_t n, const std::vector<std::string>& tokens,
                 double y0) {
  const int rows = static_cast<int>(b.values.size(0)), cols = static_cast<int>(b.values.size(1));
  const double cw = std::clamp(640.0 / cols, 1.5, 18.0), ch = std::clamp(260.0 / rows, 2.0, 18.0);
  const float* v = b.values.data_ptr<float>();
  float scale = 1e-12f;
  for (int i = 0; i < rows * cols; ++i)
    if (std::isfinite(v[i])) scale = std::max(scale, std::abs(v[i]));
  s << "<g class=\"box\" data-name=\"" << b.name << "\" data-rows=\"" << rows << "\" data-cols=\"" << cols << "\">\n"
    << "<text x=\"10\" y=\"" << y0 + 16 << "\" font-size=\"14\" font-weight=\"bold\">" << n + 1 << ". "
    << xml_escape(b.title) << " [" << rows << " × " << cols << "]</text>\n"
    << "<text x=\"10\" y=\"" << y0 + 34 << "\" font-size=\"12\">" << xml_escape(b.says) << "</text>\n";
  const double gy = y0 + 42;
  s.precision(6);
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) {
      const float x = v[i * cols + j];
      const bool finite = std::isfinite(x);
      s << "<rect x=\"" << 10 + cw * j << "\" y=\"" << gy + ch * i << "\" width=\"" << cw << "\" height=\"" << ch
        << "\" fill=\""
        << (!finite              ? std::string("url(#masked)")
            : b.name == "filter" ? colour(x)
                                 : diverging(x, scale))
        << "\" data-v=\"" << (finite ? fmt::format("{}", x) : "-inf") << "\"><title>"
        << xml_escape(axis_label(b.rows, i, tokens)) << " · " << xml_escape(axis_label(b.cols, j, tokens)) << ": "
        << (finite ? fmt::format("{}", x) : "−∞") << "</title></rect>";
    }
    s << "\n";
  }
  s.precision(2);
  s << "</g>\n";
  return 42 + ch * rows + 24;
}

}  // namespace

std::string render_boxes_svg(const TracedSequence& traced, int layer, int head) {
  const auto boxes = head_boxes(traced, std::max(layer, 0), std::max(head, 0));
  std::ostringstream body;
  body.setf(std::ios::fixed);
  body.precision(2);
  double y = 30;
  for (size_t n = 0; n < boxes.size(); ++n) y += write_box(body, boxes[n], n, traced.tokens, y);
  std::string text;
  for (const auto& t : traced.tokens) text += t;
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"700\" height=\"" << static_cast<int>(y)
    << "\" viewBox=\"0 0 700 " << static_cast<int>(y) << "\" font-family=\"sans-serif\">\n"
    << "<defs><pattern id=\"masked\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\">"
       "<rect width=\"4\" height=\"4\" fill=\"#e4e4e4\"/><path d=\"M0,4 L4,0\" stroke=\"#b0b0b0\" "
       "stroke-width=\"0.8\"/>"
       "</pattern></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text class=\"heading\" x=\"10\" y=\"18\" font-size=\"15\" font-weight=\"bold\">"
    << xml_escape(fmt::format("Attention, box by box: layer {}, head {}, {} tokens: {}", std::max(layer, 0),
                              std::max(head, 0), traced.tokens.size(), elide(text, 50)))
    << "</text>\n"
    << body.str() << "</svg>\n";
  return s.str();
}

std::string render_boxes_html(const TracedSequence& traced, int layer, int head) {
  const std::string intro =
      "<h1>Attention, box by box</h1>\n<p>One head's every step, in the order of the visual guide, with this model's "
      "own numbers: rows are tokens, columns are features or key tokens. Red is positive, blue negative (each box "
      "scaled to its largest magnitude); the filter is shaded from 0 (white) to 1 (blue); hatched cells are the "
      "masked future.</p>\n";
  return html_page("dracarys: attention box by box", intro, render_boxes_svg(traced, layer, head));
}

std::string render_text(const AttentionMaps& m, int layer, int head, int width) {
  check_selection(m, std::max(layer, 0), std::max(head, 0));
  layer = std::max(layer, 0);
  head = std::max(head, 0);
  const int T = static_cast<int>(m.tokens.size());
  auto w = m.layers[layer][head];
  const float* p = w.data_ptr<float>();
  static const char* shades[] = {" ", "\xE2\x96\x91", "\xE2\x96\x92", "\xE2\x96\x93", "\xE2\x96\x88"};  // ░▒▓█
  const int label_w = 12, index_w = 4;
  const int cols = std::max(8, width - index_w - label_w - 3);
  std::ostringstream s;
  s << "layer " << layer << ", head " << head << ": row = query token, column = key token (by index)\n"
    << "shade = weight (' ' <0.1, ░ <0.3, ▒ <0.5, ▓ <0.75, █ ≥0.75), '·' = masked future\n";
  for (int c0 = 0; c0 < T; c0 += cols) {  // wrap wide prompts into blocks of columns
    const int c1 = std::min(T, c0 + cols);
    if (c0 > 0) s << "\n(keys " << c0 << "-" << c1 - 1 << ")\n";
    for (int digit : {10, 1}) {  // column indices, written vertically: tens then units
      s << std::string(index_w + label_w + 2, ' ') << "|";
      for (int k = c0; k < c1; ++k)
        s << (digit == 10 ? (k >= 10 ? std::to_string(k / 10 % 10) : " ") : std::to_string(k % 10));
      s << "\n";
    }
    for (int q = 0; q < T; ++q) {
      char idx[16];
      std::snprintf(idx, sizeof idx, "%*d ", index_w - 1, q);
      std::string lab = elide(m.tokens[q], label_w);
      s << idx << lab << std::string(label_w + 1 - std::min<size_t>(label_w, count_chars(lab)), ' ') << " |";
      for (int k = c0; k < c1; ++k) {
        if (k > q) {
          s << "\xC2\xB7";
          continue;
        }
        const float v = p[q * T + k];
        s << shades[v < 0.1f ? 0 : v < 0.3f ? 1 : v < 0.5f ? 2 : v < 0.75f ? 3 : 4];
      }
      s << "\n";
    }
  }
  return s.str();
}

}  // namespace dracarys
