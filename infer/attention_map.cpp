#include "infer/attention_map.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

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

std::string render_svg(const AttentionMaps& m, int layer, int head) {
  check_selection(m, layer, head);
  const int T = static_cast<int>(m.tokens.size());
  const int L = static_cast<int>(m.layers.size()), H = static_cast<int>(m.layers[0].size(0));
  std::vector<int> layers, heads;
  for (int l = 0; l < L; ++l)
    if (layer < 0 || l == layer) layers.push_back(l);
  for (int h = 0; h < H; ++h)
    if (head < 0 || h == head) heads.push_back(h);
  // Cells shrink as prompts grow so a panel stays about 300-400 px wide; labels follow.
  const double cell = std::clamp(360.0 / T, 4.0, 22.0);
  const double font = std::clamp(cell * 0.75, 5.0, 12.0);
  const double label = std::min(110.0, font * 9);
  const double grid = cell * T, panel_w = label + grid + 20, panel_h = label + grid + 40;
  const double heading_h = 26, legend_h = heading_h + 60;
  const double width = std::max(panel_w * heads.size(), 420.0), height = legend_h + panel_h * layers.size();
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
  const std::string& prompt = m.text;
  s << "<text class=\"heading\" x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">Attention filters (" << T
    << " tokens): " << xml_escape(elide(prompt, static_cast<size_t>(std::max(20.0, width / 8 - 30)))) << "</text>\n";
  write_legend(s, heading_h);
  for (size_t li = 0; li < layers.size(); ++li) {
    for (size_t hi = 0; hi < heads.size(); ++hi) {
      const int l = layers[li], h = heads[hi];
      const double x0 = panel_w * hi, y0 = legend_h + panel_h * li;
      const double gx = x0 + label, gy = y0 + label + 20;
      auto w = m.layers[l][h];
      const float* p = w.data_ptr<float>();
      s << "<g class=\"panel\" data-layer=\"" << l << "\" data-head=\"" << h << "\">\n<text x=\"" << gx + grid / 2
        << "\" y=\"" << y0 + 14 << "\" font-size=\"13\" font-weight=\"bold\" text-anchor=\"middle\">layer " << l
        << ", head " << h << "</text>\n";
      for (int t = 0; t < T; ++t) {
        const std::string tokn = xml_escape(elide(m.tokens[t], 12));
        s << "<text x=\"" << gx - 3 << "\" y=\"" << gy + cell * (t + 0.7) << "\" font-size=\"" << font
          << "\" text-anchor=\"end\">" << tokn << "</text>";
        s << "<text transform=\"translate(" << gx + cell * (t + 0.7) << "," << gy - 3 << ") rotate(-60)\" font-size=\""
          << font << "\">" << tokn << "</text>\n";
      }
      for (int q = 0; q < T; ++q) {
        for (int k = 0; k < T; ++k) {
          const bool masked = k > q;
          s << "<rect x=\"" << gx + cell * k << "\" y=\"" << gy + cell * q << "\" width=\"" << cell << "\" height=\""
            << cell << "\" fill=\"" << (masked ? std::string("url(#masked)") : colour(p[q * T + k])) << "\"";
          if (masked) {
            s << " class=\"masked\"/>";
          } else {
            s.precision(6);
            s << " data-q=\"" << q << "\" data-k=\"" << k << "\" data-w=\"" << p[q * T + k] << "\"><title>query " << q
              << " " << xml_escape(m.tokens[q]) << " → key " << k << " " << xml_escape(m.tokens[k]) << ": "
              << p[q * T + k] << "</title></rect>";
            s.precision(2);
          }
        }
        s << "\n";
      }
      s << "<rect x=\"" << gx << "\" y=\"" << gy << "\" width=\"" << grid << "\" height=\"" << grid
        << "\" fill=\"none\" stroke=\"#666\"/>\n</g>\n";
    }
  }
  s << "</svg>\n";
  return s.str();
}

std::string render_html(const AttentionMaps& m, int layer, int head) {
  std::ostringstream s;
  const std::string& prompt = m.text;
  s << "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
    << "<title>dracarys attention: " << xml_escape(elide(prompt, 60)) << "</title>\n"
    << "<style>body{font-family:sans-serif;margin:16px}#info{height:1.4em;font-family:monospace}"
       "rect[data-w]:hover{stroke:#d00;stroke-width:1.5}svg{max-width:100%;height:auto}</style>\n</head>\n<body>\n"
    << "<h1>Attention filters</h1>\n<p>Prompt (" << m.tokens.size() << " tokens): <code>" << xml_escape(prompt)
    << "</code></p>\n<p>Each panel is one head of one layer: row <i>q</i> shows how much the query token <i>q</i> "
       "draws from each key token at or before it. Hatched cells are the future, masked out.</p>\n"
    << "<p id=\"info\">Hover a cell to see its query, key and weight.</p>\n"
    << render_svg(m, layer, head)
    << "<script>//<![CDATA[\n"
       "document.querySelectorAll('rect[data-w]').forEach(function(r){r.addEventListener('mouseenter',function(){"
       "var t=r.querySelector('title');document.getElementById('info').textContent=t?t.textContent:'';});});\n"
       "//]]></script>\n</body>\n</html>\n";
  return s.str();
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
