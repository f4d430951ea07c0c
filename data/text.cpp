#include "data/text.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dracarys {

bool valid_utf8(std::string_view s, size_t* bad_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    if (i + len > n) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        if (bad_offset) *bad_offset = i;
        return false;
      }
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

size_t count_chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string collapse_whitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = !out.empty();
    } else {
      if (space) out.push_back(' ');
      space = false;
      out.push_back(c);
    }
  }
  return out;
}

static std::string strip_between(std::string_view s, char open, char close) {
  std::string out;
  out.reserve(s.size());
  int depth = 0;
  for (char c : s) {
    if (c == open)
      ++depth;
    else if (c == close && depth > 0)
      --depth;
    else if (depth == 0)
      out.push_back(c);
  }
  return out;
}

std::string strip_cues(std::string_view s) { return strip_between(strip_between(s, '(', ')'), '[', ']'); }

std::string strip_tags(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') {
      size_t end = s.find('>', i);
      // Only well-formed tags: "<" followed by a letter or "/", closed on the same caption.
      const char next = i + 1 < s.size() ? s[i + 1] : '\0';
      const bool letter = (next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z');
      if (end != std::string_view::npos && (next == '/' || letter)) {
        i = end;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

size_t complete_utf8_prefix(std::string_view s) {
  const size_t end = s.size();
  for (size_t i = end; i > 0 && end - i < 4;) {
    const auto c = static_cast<unsigned char>(s[--i]);
    if ((c & 0xC0) != 0x80) {  // a lead byte: is its sequence complete?
      const size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
      return end - i >= need ? end : i;
    }
  }
  return end;
}

std::string_view strip_bom(std::string_view s) {
  if (s.size() >= 3 && s.substr(0, 3) == "\xEF\xBB\xBF") s.remove_prefix(3);
  return s;
}

std::string escape_control(std::string_view s, bool keep_newlines) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      const bool control = (c < 0x20 && c != '\t' && !(keep_newlines && c == '\n')) || c == 0x7f;
      if (control)
        out += std::string("\\x") + kHex[c >> 4] + kHex[c & 15];
      else
        out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    const std::string_view ch = s.substr(i, len);
    if (len == 1 || ch.size() < len || !valid_utf8(ch, &bad)) {  // not UTF-8: show the byte
      out += std::string("\\x") + kHex[c >> 4] + kHex[c & 15];
      ++i;
      continue;
    }
    const auto second = static_cast<unsigned char>(ch[1]);
    if (c == 0xC2 && second >= 0x80 && second <= 0x9F)  // a C1 control, U+0080..U+009F
      out += std::string("\\u00") + kHex[second >> 4] + kHex[second & 15];
    else
      out += ch;
    i += len;
  }
  return out;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace dracarys
