// Rows as a terminal table, CSV (RFC 4180) or JSON: how astraea-bench prints what it queries.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace astraea::app {

/// Column names and rows of text; nullopt is NULL.
struct Rows {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
};

enum class RowFormat { kTable, kCsv, kJson };

/// Parses --format ("table", "csv", "json"); throws the command line's UsageError naming the value.
RowFormat parse_row_format(const std::string& name);

/// Writes `rows`: a table with aligned columns (NULL shown as "-"), CSV with a header line
/// (NULL as an empty field), or a JSON array of objects (NULL as null; text that is a JSON number
/// is written as one).
void write_rows(std::ostream& out, const Rows& rows, RowFormat format);

}  // namespace astraea::app
