// An RFC 4180 CSV reader: quoted fields, doubled quotes, commas and newlines inside quotes,
// CRLF or LF line ends, a leading BOM.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dracarys {

struct CsvRow {
  std::vector<std::string> fields;
  size_t line = 0;  // 1-based line where the row starts
};

// Throws DataError (data/errors.h) for an unterminated quoted field, naming `source` and line.
std::vector<CsvRow> parse_csv(std::string_view text, const std::string& source);

}  // namespace dracarys
