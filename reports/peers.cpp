// The report's first chart (docs/peers.md): every method's sweep cells as quality against speedup,
// a curve per method, the tuned schedules marked, and each method's quality at equal speed. Speed
// is the cells' measured sampling time against the dense cells of the same model, size and
// device; with a step-cost table (ReportOptions::step_costs) it is also priced on the table's
// model from each cell's step actions, which is how decisions made on the tiny model become a time
// on Wan2.1-1.3B.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/step_costs.h"
#include "reports/sections.h"

namespace astraea::reports {
namespace {

using json = nlohmann::json;

struct Point {
  std::string method, label;
  bool tuned = false;
  std::vector<double> sample_s, psnr, vbench, priced_ms;
  double priced_dense_ms = NAN;
};

double mean(const std::vector<double>& v) {
  if (v.empty()) return NAN;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

json or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// QUALITY at SPEEDUP on a method's points (speedup, quality): linear between the two points that
// bracket it, NaN outside them.
double at_speed(std::vector<std::pair<double, double>> pts, double speedup) {
  std::sort(pts.begin(), pts.end());
  for (size_t i = 0; i + 1 < pts.size(); ++i) {
    const auto [s0, q0] = pts[i];
    const auto [s1, q1] = pts[i + 1];
    if (s0 <= speedup && speedup <= s1 && std::isfinite(q0) && std::isfinite(q1)) {
      return s1 == s0 ? std::max(q0, q1) : q0 + (speedup - s0) / (s1 - s0) * (q1 - q0);
    }
  }
  for (const auto& [s, q] : pts)
    if (s == speedup) return q;
  return NAN;
}

}  // namespace

json peers(const db::Store& store, const std::string& step_costs_file, json& missing) {
  std::optional<engine::StepCosts> costs;
  if (!step_costs_file.empty()) costs = engine::StepCosts::read(step_costs_file);  // names the file when bad
  const auto rows = store.query(
      "SELECT r.id, r.config_json, r.device, "
      "(SELECT value FROM measurements m WHERE m.run_id = r.id AND m.name = 'sample_s'), "
      "(SELECT value FROM measurements m WHERE m.run_id = r.id AND m.name = 'psnr'), "
      "(SELECT value FROM measurements m WHERE m.run_id = r.id AND m.name = 'vbench_proxy_total') "
      "FROM runs r WHERE r.kind = 'sweep-cell' ORDER BY r.id");
  // Points by (model, size, device) and then by method label.
  std::map<std::string, std::map<std::string, Point>> groups;
  for (const auto& row : rows.rows) {
    json c;
    try {
      c = json::parse(row[1].value_or("{}"));
    } catch (const json::exception&) {
      continue;
    }
    const auto m = c.value("method", json::object());
    Point p;
    p.tuned = m.contains("schedule");
    p.method = m.contains("name")                        ? m["name"].get<std::string>()
               : p.tuned || m.value("budget", 1.0) < 1.0 ? "astraea"
                                                         : "dense";
    char budget[32];
    std::snprintf(budget, sizeof budget, "budget %.2f", m.value("budget", 1.0));
    p.label = m.contains("name") ? p.method + " " + m.value("params", json::object()).dump()
              : p.tuned          ? "tuned schedule " + m["schedule"].dump()
                                 : budget;
    const std::string group = c.value("model", "") + " " + std::to_string(c.value("frames", 0)) + "x" +
                              std::to_string(c.value("height", 0)) + "x" +
                              std::to_string(c.value("width", 0)) + " on " + row[2].value_or("");
    auto& point = groups[group][p.label];
    if (point.label.empty()) point = p;
    if (row[3]) point.sample_s.push_back(std::stod(*row[3]));
    if (row[4]) point.psnr.push_back(std::stod(*row[4]));
    if (row[5]) point.vbench.push_back(std::stod(*row[5]));
    if (costs && c.contains("step_actions")) {
      const auto actions = c["step_actions"].get<std::vector<std::string>>();
      try {
        point.priced_ms.push_back(costs->run_ms(actions));
        const int64_t calls = actions.empty() || actions[0].find('+') != std::string::npos ? 2 : 1;
        point.priced_dense_ms = costs->dense_run_ms(static_cast<int64_t>(actions.size()), calls);
      } catch (const std::invalid_argument&) {
        // an action the table cannot price (another model family's): measured speed only
      }
    }
  }
  json out = json::array();
  for (auto& [group, points] : groups) {
    double dense_s = NAN, dense_vbench = NAN;
    for (auto& [label, p] : points)
      if (p.method == "dense") dense_s = mean(p.sample_s), dense_vbench = mean(p.vbench);
    if (!std::isfinite(dense_s) || points.size() < 2) continue;
    json g{{"group", group}, {"dense_vbench", or_null(dense_vbench)}, {"points", json::array()}};
    if (costs)
      g["priced_on"] = costs->model + " (" + std::to_string(costs->tokens) + " tokens) on " + costs->device;
    std::map<std::string, std::vector<std::pair<double, double>>> psnr_curve, vbench_curve;
    for (auto& [label, p] : points) {
      if (p.method == "dense") continue;
      const double speedup = dense_s / mean(p.sample_s);
      const double priced = p.priced_ms.empty() ? NAN : p.priced_dense_ms / mean(p.priced_ms);
      g["points"].push_back({{"method", p.method},
                             {"label", label},
                             {"tuned", p.tuned},
                             {"cells", p.sample_s.size()},
                             {"speedup", or_null(speedup)},
                             {"priced_speedup", or_null(priced)},
                             {"psnr", or_null(mean(p.psnr))},
                             {"vbench", or_null(mean(p.vbench))}});
      const double x = std::isfinite(priced) ? priced : speedup;
      const std::string curve = p.tuned ? "tuned" : p.method;
      psnr_curve[curve].push_back({x, mean(p.psnr)});
      vbench_curve[curve].push_back({x, mean(p.vbench)});
    }
    // Each method at equal speed: its curve's quality at 1.5x, 2x, 2.5x and 3x (priced when a table is
    // given).
    json table = json::array();
    for (const auto& [method, pts] : psnr_curve) {
      json row{{"method", method}};
      for (double s : {1.5, 2.0, 2.5, 3.0}) {
        char key[16];
        std::snprintf(key, sizeof key, "%.1fx", s);
        row["psnr"][key] = or_null(at_speed(pts, s));
        row["vbench"][key] = or_null(at_speed(vbench_curve[method], s));
      }
      table.push_back(row);
    }
    g["equal_speed"] = table;
    out.push_back(g);
  }
  if (out.empty()) {
    missing.push_back(
        "methods compared: no sweep with dense and another method; run astraea-bench sweep --method dense "
        "--methods 'teacache:threshold=0.05|0.1|0.2' ... --metrics both");
  }
  return out;
}

}  // namespace astraea::reports
