// Small UTF-8 and whitespace helpers shared by the corpus readers and the tokenizer.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dracarys {

// True when `s` is valid UTF-8; otherwise *bad_offset gets the first bad byte's offset.
bool valid_utf8(std::string_view s, size_t* bad_offset = nullptr);
// Code points in valid UTF-8 (continuation bytes are not counted).
size_t count_chars(std::string_view s);
// Runs of whitespace (spaces, tabs, newlines) become one space; ends are trimmed.
std::string collapse_whitespace(std::string_view s);
// Removes bracketed sound cues: "( grunts )", "[ door slams ]".
std::string strip_cues(std::string_view s);
// Removes HTML-style tags as used in subtitles: <i>, </i>, <font color="...">.
std::string strip_tags(std::string_view s);
// Text made safe for a terminal: control characters (C0 but tab and, when `keep_newlines`,
// newline; DEL; C1) become visible escapes such as \x1b and \u009b, and so does any byte that
// is not valid UTF-8. Everything else is unchanged.
std::string escape_control(std::string_view s, bool keep_newlines = false);
// Length of the longest prefix of `s` that ends on a character boundary: a text decoded from a
// byte-fallback token may end inside a UTF-8 character, whose other bytes are still to come.
size_t complete_utf8_prefix(std::string_view s);
// ASCII letters in lower case (other bytes unchanged).
std::string ascii_lower(std::string_view s);
// Edits (insertions, deletions, substitutions of bytes) that turn `a` into `b`.
size_t edit_distance(std::string_view a, std::string_view b);
// Drops a leading UTF-8 byte order mark.
std::string_view strip_bom(std::string_view s);

}  // namespace dracarys
