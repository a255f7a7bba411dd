// The report's "where the time goes" section: the latency model on one rank, each budget's step
// with its time per operation (several ranks: the scaling section).
#include <algorithm>
#include <map>
#include <string>
#include <tuple>

#include "reports/sections.h"

namespace astraea::reports {
namespace {

double value(const std::optional<std::string>& text) { return text ? std::stod(*text) : 0.0; }

}  // namespace

using json = nlohmann::json;

json latency(const db::Store& store, json& missing) {
  // The latency model as the store defines it (db/schema/004_views.sql), as query and tune read it.
  const auto rows = store.query(
      "SELECT run_id, model, size, device, budget, step_ms, dense_step_ms, noise FROM latency WHERE "
      "world_size = 1 "
      "ORDER BY run_id");  // several ranks: the scaling section
  if (rows.rows.empty()) {
    missing.push_back("where the time goes: no profiles; run astraea-bench profile");
    return json::array();
  }
  const auto ops = store.query(
      "SELECT m.run_id, m.op, m.value, m.source FROM measurements m JOIN runs r ON r.id = m.run_id "
      "WHERE r.kind = 'profile' AND m.name = 'op_ms' ORDER BY m.id");
  std::map<int64_t, json> op_ms;
  std::map<int64_t, std::string> op_source;
  for (const auto& row : ops.rows) {
    op_ms[std::stoll(*row[0])][*row[1]] = value(row[2]);
    op_source[std::stoll(*row[0])] = row[3].value_or("");
  }
  auto or_null = [](const std::optional<std::string>& v) { return v ? json(value(v)) : json(nullptr); };
  json out = json::array();
  for (const auto& row : rows.rows) {
    const int64_t id = std::stoll(*row[0]);
    out.push_back({{"model", row[1].value_or("")},
                   {"size", row[2].value_or("")},
                   {"device", row[3].value_or("")},
                   {"budget", row[4] ? value(row[4]) : 1.0},
                   {"step_ms", value(row[5])},
                   {"dense_ms", or_null(row[6])},
                   {"noise", or_null(row[7])},
                   {"ops", op_ms.count(id) ? op_ms[id] : json::object()},
                   {"ops_clock", op_source[id]}});
  }
  std::sort(out.begin(), out.end(), [](const json& a, const json& b) {
    return std::tie(a["model"], a["size"], a["device"]) < std::tie(b["model"], b["size"], b["device"]) ||
           (std::tie(a["model"], a["size"], a["device"]) == std::tie(b["model"], b["size"], b["device"]) &&
            a["budget"].get<double>() > b["budget"].get<double>());
  });
  return out;
}

}  // namespace astraea::reports
