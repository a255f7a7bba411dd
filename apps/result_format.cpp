#include "apps/result_format.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>

#include "apps/commands.h"

namespace astraea::app {
namespace {

// A JSON number exactly (so "007" or "1e" stay text).
bool is_json_number(const std::string& s) {
  static const std::regex number(R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
  return std::regex_match(s, number);
}

std::string csv_field(const std::optional<std::string>& v) {
  if (!v) return "";
  if (v->find_first_of(",\"\r\n") == std::string::npos) return *v;
  std::string quoted = "\"";
  for (char c : *v) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

}  // namespace

RowFormat parse_row_format(const std::string& name) {
  if (name == "table") return RowFormat::kTable;
  if (name == "csv") return RowFormat::kCsv;
  if (name == "json") return RowFormat::kJson;
  throw UsageError("--format '" + name + "' is not table, csv or json");
}

void write_rows(std::ostream& out, const Rows& r, RowFormat format) {
  switch (format) {
    case RowFormat::kTable: {
      std::vector<size_t> width(r.columns.size());
      for (size_t c = 0; c < r.columns.size(); ++c) width[c] = r.columns[c].size();
      for (const auto& row : r.rows)
        for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c] ? row[c]->size() : 1);
      auto line = [&](const std::vector<std::string>& cells) {
        for (size_t c = 0; c < cells.size(); ++c) {
          out << cells[c] << (c + 1 < cells.size() ? std::string(width[c] - cells[c].size() + 2, ' ') : "");
        }
        out << "\n";
      };
      line(r.columns);
      std::vector<std::string> rule;
      for (size_t w : width) rule.emplace_back(w, '-');
      line(rule);
      for (const auto& row : r.rows) {
        std::vector<std::string> cells;
        for (const auto& v : row) cells.push_back(v ? *v : "-");
        line(cells);
      }
      out << "(" << r.rows.size() << (r.rows.size() == 1 ? " row)\n" : " rows)\n");
      return;
    }
    case RowFormat::kCsv: {
      for (size_t c = 0; c < r.columns.size(); ++c) out << (c ? "," : "") << csv_field(r.columns[c]);
      out << "\r\n";
      for (const auto& row : r.rows) {
        for (size_t c = 0; c < row.size(); ++c) out << (c ? "," : "") << csv_field(row[c]);
        out << "\r\n";
      }
      return;
    }
    case RowFormat::kJson: {
      auto all = nlohmann::ordered_json::array();  // keeps the columns in query order
      for (const auto& row : r.rows) {
        nlohmann::ordered_json obj = nlohmann::ordered_json::object();
        for (size_t c = 0; c < row.size(); ++c) {
          const auto& v = row[c];
          obj[r.columns[c]] = !v ? nlohmann::ordered_json() : is_json_number(*v) ? nlohmann::ordered_json::parse(*v) : nlohmann::ordered_json(*v);
        }
        all.push_back(std::move(obj));
      }
      out << all.dump(2) << "\n";
      return;
    }
  }
}

}  // namespace astraea::app
