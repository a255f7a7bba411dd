// The report's scaling section: the speedup of one guided step on P ranks over one rank, dense
// (each layout's profiled dense step) and tuned (that times the newest study tuned for P ranks:
// its predicted dense over its predicted schedule), beside the ideal line P.
#include <map>
#include <string>

#include "reports/sections.h"

namespace astraea::reports {

using json = nlohmann::json;

json scaling(const db::Store& store, json& missing) {
  const auto rows = store.query(
      "SELECT model, size, device, world_size, parallel, dense_step_ms, one_rank_dense_ms, dense_speedup "
      "FROM "
      "world_speedup ORDER BY model, size, device, world_size, dense_step_ms");
  // Of each world size, the newest validation run's predicted speedup over dense on as many ranks.
  const auto tuned = store.query(
      "SELECT coalesce(json_extract(r.config_json, '$.world_size'), 1), "
      "(SELECT value FROM measurements m WHERE m.run_id = r.id AND m.name = 'predicted_dense_ms'), "
      "(SELECT value FROM measurements m WHERE m.run_id = r.id AND m.name = 'predicted_ms') "
      "FROM runs r WHERE r.kind = 'validation' ORDER BY r.id");
  std::map<int64_t, double> tuned_factor;
  for (const auto& t : tuned.rows) {
    if (t[0] && t[1] && t[2] && std::stod(*t[2]) > 0)
      tuned_factor[std::stoll(*t[0])] = std::stod(*t[1]) / std::stod(*t[2]);
  }
  json out = json::array();
  bool several = false;
  for (const auto& r : rows.rows) {
    const int64_t ranks = std::stoll(r[3].value_or("1"));
    several = several || ranks > 1;
    json row{{"model", r[0].value_or("")},    {"size", r[1].value_or("")},
             {"device", r[2].value_or("")},   {"ranks", ranks},
             {"parallel", r[4].value_or("")}, {"dense_ms", std::stod(r[5].value_or("0"))}};
    if (r[6] && r[7]) {
      row["one_rank_dense_ms"] = std::stod(*r[6]);
      row["dense_speedup"] = std::stod(*r[7]);
      if (tuned_factor.count(ranks)) row["tuned_speedup"] = std::stod(*r[7]) * tuned_factor.at(ranks);
    }
    out.push_back(row);
  }
  if (!several) {
    missing.push_back(
        "scaling across GPUs: no profile on several ranks; run astraea-bench launch --nproc P -- profile ... "
        "(and tune --latency-model PRESET@FxHxW@P for the tuned line)");
    return json::array();
  }
  return out;
}

}  // namespace astraea::reports
