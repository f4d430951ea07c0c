#include "data/csv.h"

#include "data/errors.h"
#include "data/text.h"

namespace dracarys {

std::vector<CsvRow> parse_csv(std::string_view text, const std::string& source) {
  text = strip_bom(text);
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string field;
  size_t line = 1, i = 0;
  row.line = 1;
  bool row_has_content = false;
  const size_t n = text.size();
  while (i < n) {
    char c = text[i];
    if (c == '"' && field.empty()) {  // quoted field
      size_t start_line = line;
      ++i;
      for (;;) {
        if (i >= n) throw DataError(source + ":" + std::to_string(start_line) + ": CSV quoted field is never closed");
        char q = text[i++];
        if (q == '"') {
          if (i < n && text[i] == '"') {
            field.push_back('"');
            ++i;
          } else
            break;
        } else {
          if (q == '\n') ++line;
          field.push_back(q);
        }
      }
      row_has_content = true;
      continue;  // what follows must be a separator or a line end; stray text is kept as-is
    }
    if (c == ',') {
      row.fields.push_back(std::move(field));
      field.clear();
      row_has_content = true;
      ++i;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
      ++i;
      if (row_has_content || !field.empty()) {
        row.fields.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      field.clear();
      row = CsvRow{};
      ++line;
      row.line = line;
      row_has_content = false;
    } else {
      field.push_back(c);
      row_has_content = true;
      ++i;
    }
  }
  if (row_has_content || !field.empty()) {
    row.fields.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace dracarys
