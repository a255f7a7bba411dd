#include "reports/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "io/safetensors.h"
#include "io/video_io.h"
#include "reports/embedded.h"
#include "reports/sections.h"

namespace astraea::reports {
namespace {

using nlohmann::json;

json parse_or_empty(const std::optional<std::string>& text) {
  if (!text) return json::object();
  try {
    return json::parse(*text);
  } catch (const json::exception&) {
    return json::object();
  }
}

double number(const std::optional<std::string>& text) { return text ? std::stod(*text) : std::nan(""); }

std::string size_of(const json& c) {
  return std::to_string(c.value("frames", 0)) + "x" + std::to_string(c.value("height", 0)) + "x" +
         std::to_string(c.value("width", 0));
}

// A sweep cell's method, as the summary names it.
std::string method_label(const json& method) {
  if (method.contains("name")) {  // a registered method (sweep --method), with its parameters
    const auto params = method.value("params", json::object()).dump();
    return method["name"].get<std::string>() + (params == "{}" ? "" : " " + params);
  }
  if (method.contains("schedule")) {
    const auto& b = method["schedule"];
    double mean = 0;
    for (const auto& v : b) mean += v.get<double>();
    char s[64];
    std::snprintf(s, sizeof s, "schedule (mean budget %.2f)", b.empty() ? 1.0 : mean / static_cast<double>(b.size()));
    return s;
  }
  if (const double budget = method.value("budget", 1.0); budget >= 1.0) return "dense";
  char s[64];
  std::snprintf(s, sizeof s, "budget %.2f", method.value("budget", 1.0));
  return s;
}

// A sweep cell's method's registered name: a budget or schedule cell is ASTRAEA's, budget 1 dense.
std::string method_name(const json& method) {
  if (method.contains("name")) return method["name"].get<std::string>();
  return method.contains("schedule") || method.value("budget", 1.0) < 1.0 ? "astraea" : "dense";
}

// Whether a sweep cell's METHOD is shown under --method (dense always: the baseline).
bool shown(const ReportOptions& o, const json& method) {
  return o.method.empty() || method_name(method) == o.method || method_name(method) == "dense";
}

// Measurements of the runs of KIND, by run id: name -> value.
std::map<int64_t, std::map<std::string, double>> measurements_of(const db::Store& store, const std::string& kind) {
  std::map<int64_t, std::map<std::string, double>> out;
  const auto r = store.query(
      "SELECT m.run_id, m.name, m.value FROM measurements m JOIN runs r ON r.id = m.run_id "
      "WHERE r.kind = ?1 AND m.op IS NULL ORDER BY m.id",
      {kind});
  for (const auto& row : r.rows) out[std::stoll(*row[0])][*row[1]] = number(row[2]);
  return out;
}

json null_if_nan(double v) { return std::isnan(v) ? json(nullptr) : std::isinf(v) ? json("inf") : json(v); }

// " AND <COLUMN is in --runs>", reading the ranges from parameter ?1 (runs_ranges()). COLUMN must be
// qualified by its table: json_each has an `id` column of its own.
std::string runs_filter(const std::string& column) {
  return " AND (json_array_length(?1) = 0 OR EXISTS (SELECT 1 FROM json_each(?1) j WHERE " + column +
         " BETWEEN json_extract(j.value, '$[0]') AND json_extract(j.value, '$[1]')))";
}

// --runs as the JSON array of [first, last] ranges that runs_filter() binds; [] for all runs.
std::string runs_ranges(const ReportOptions& o) {
  json ranges = json::array();
  for (const auto& [lo, hi] : o.runs) ranges.push_back({lo, hi});
  return ranges.dump();
}

json summary(const db::Store& store, const ReportOptions& o, json& missing) {
  const auto runs = store.query("SELECT id, config_json, device FROM runs WHERE kind = 'sweep-cell'" +
                                    runs_filter("runs.id") + " ORDER BY id",
                                {runs_ranges(o)});
  if (runs.rows.empty()) {
    missing.push_back(o.runs.empty() ? "summary: no sweep cells; run astraea-bench sweep"
                                     : "summary: no sweep cells among --runs");
    return json::array();
  }
  const auto m = measurements_of(store, "sweep-cell");
  struct Group {
    json key;
    std::map<std::string, std::vector<double>> values;
    int cells = 0;
  };
  std::map<std::string, Group> groups;
  for (const auto& row : runs.rows) {
    const auto c = parse_or_empty(row[1]);
    if (!shown(o, c.value("method", json::object()))) continue;
    json key{{"model", c.value("model", "")}, {"size", size_of(c)}, {"device", row[2].value_or("")},
             {"method", method_label(c.value("method", json::object()))}};
    auto& g = groups[key.dump()];
    g.key = key;
    ++g.cells;
    const auto it = m.find(std::stoll(*row[0]));
    if (it == m.end()) continue;
    for (const auto& [name, v] : it->second) g.values[name].push_back(v);
  }
  auto mean = [](const std::vector<double>& v) {
    if (v.empty()) return std::nan("");
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  json out = json::array();
  for (auto& [k, g] : groups) {
    json dense_key = g.key;
    dense_key["method"] = "dense";
    const auto d = groups.find(dense_key.dump());
    const double dense_s = d == groups.end() ? std::nan("") : mean(d->second.values["sample_s"]);
    const double s = mean(g.values["sample_s"]);
    json row = g.key;
    row["cells"] = g.cells;
    row["sample_s"] = null_if_nan(s);
    row["speedup"] = null_if_nan(dense_s / s);
    row["psnr"] = null_if_nan(mean(g.values["psnr"]));
    row["ssim"] = null_if_nan(mean(g.values["ssim"]));
    row["vbench_proxy"] = null_if_nan(mean(g.values["vbench_proxy_total"]));
    row["token_share"] = null_if_nan(mean(g.values["token_share"]));
    row["cache_mb"] = null_if_nan(mean(g.values["cache_bytes"]) / 1e6);
    out.push_back(row);
  }
  return out;
}

json study(const db::Store& store, const ReportOptions& o, json& missing) {
  const auto studies = store.query("SELECT id, name, config_json FROM studies ORDER BY id");
  // The named study, or the newest.
  const std::vector<std::optional<std::string>>* chosen = nullptr;
  for (const auto& row : studies.rows)
    if (o.study.empty() || *row[1] == o.study) chosen = &row;
  if (!chosen && !o.study.empty()) throw std::invalid_argument("--study " + o.study + " is not in the store");
  if (!chosen) {
    missing.push_back("Pareto front, schedule, convergence: no study; run astraea-bench tune");
    return nullptr;
  }
  const std::string id = *(*chosen)[0];
  const auto trials = store.query(
      "SELECT number, predicted_cost, fitness, genome_json FROM trials WHERE study_id = ?1 AND state = "
      "'complete' "
      "ORDER BY number",
      {id});
  json s{{"name", *(*chosen)[1]}, {"config", parse_or_empty((*chosen)[2])}};
  json all = json::array(), convergence = json::array();
  double best = -INFINITY;
  int64_t best_number = -1;
  for (size_t i = 0; i < trials.rows.size(); ++i) {
    const auto& row = trials.rows[i];
    const double cost = number(row[1]), fit = number(row[2]);
    all.push_back({{"number", std::stoll(*row[0])}, {"cost_ms", cost}, {"fitness", fit}, {"genome", parse_or_empty(row[3])}});
    if (fit > best) {
      best = fit;
      best_number = std::stoll(*row[0]);
    }
    convergence.push_back({{"evaluations", static_cast<int64_t>(i + 1)}, {"best", best}});
  }
  json front = json::array();
  for (const auto& a : all) {
    bool dominated = false;
    for (const auto& b : all) {
      const double ac = a["cost_ms"], af = a["fitness"], bc = b["cost_ms"], bf = b["fitness"];
      dominated = dominated || (bc <= ac && bf >= af && (bc < ac || bf > af));
    }
    if (!dominated) front.push_back(a["number"]);
  }
  s["trials"] = all;
  s["front"] = front;
  s["best"] = best_number;
  s["convergence"] = convergence;
  json schedules = json::array();
  // Each exported trial once (the newest export of it), named by trial and file: one file name
  // exported twice would otherwise label two series alike.
  const auto exported = store.query(
      "SELECT e.path, e.schedule_json, t.number FROM exported_schedules e JOIN trials t ON t.id = e.trial_id "
      "WHERE e.study_id = ?1 AND e.id = (SELECT max(id) FROM exported_schedules WHERE trial_id = e.trial_id) "
      "ORDER BY e.id",
      {id});
  for (const auto& row : exported.rows) {
    const auto j = parse_or_empty(row[1]);
    const std::string name = "trial " + *row[2] + " (" + std::filesystem::path(*row[0]).filename().string() + ")";
    schedules.push_back({{"name", name}, {"budgets", j.value("budgets", json::array())}});
  }
  if (schedules.empty() && best_number >= 0) {
    for (const auto& a : all)
      if (a["number"] == best_number) schedules.push_back({{"name", "best trial " + std::to_string(best_number)}, {"budgets", a["genome"]}});
  }
  s["schedules"] = schedules;
  if (all.empty()) missing.push_back("study " + s["name"].get<std::string>() + " has no complete trials yet");
  return s;
}

json provenance(const db::Store& store) {
  json p;
  auto distinct = [&](const std::string& sql) {
    json out = json::array();
    for (const auto& row : store.query(sql).rows)
      if (row[0] && !row[0]->empty()) out.push_back(*row[0]);
    return out;
  };
  p["devices"] = distinct("SELECT DISTINCT device FROM runs ORDER BY device");
  p["git_revisions"] = distinct("SELECT DISTINCT git_revision FROM runs ORDER BY git_revision");
  json versions = json::array();
  for (const auto& v : distinct("SELECT DISTINCT versions_json FROM runs WHERE versions_json <> '{}' ORDER BY versions_json"))
    versions.push_back(json::parse(v.get<std::string>()));
  p["versions"] = versions;
  p["commands"] = distinct("SELECT DISTINCT json_extract(config_json, '$.command') FROM runs ORDER BY 1");
  json counts = json::object();
  for (const auto& row : store.query("SELECT kind, count(*) FROM runs GROUP BY kind ORDER BY kind").rows)
    counts[*row[0]] = std::stoll(*row[1]);
  p["runs"] = counts;
  p["schema_version"] = store.schema_version();
  return p;
}

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t n = (bytes[i] << 16) | (i + 1 < bytes.size() ? bytes[i + 1] << 8 : 0) | (i + 2 < bytes.size() ? bytes[i + 2] : 0);
    out += t[(n >> 18) & 63];
    out += t[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? t[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? t[n & 63] : '=';
  }
  return out;
}

// A safetensors video (sweep --videos) as MP4 bytes; empty if it cannot be read.
std::vector<uint8_t> encode_mp4(const float* rgb, int64_t frames, int64_t height, int64_t width) {
  const std::string tmp = (std::filesystem::temp_directory_path() / ("astraea-report-" + std::to_string(::getpid()) + ".mp4")).string();
  write_mp4(tmp, rgb, frames, height, width, 16.0);
  std::ifstream in(tmp, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(tmp);
  return bytes;
}

// A kept video (sweep --videos): float32 [F, H, W, 3]; empty when unreadable.
struct KeptVideo {
  std::vector<float> rgb;
  int64_t frames = 0, height = 0, width = 0;
};

KeptVideo read_kept(const std::string& path) {
  KeptVideo k;
  try {
    const auto file = SafetensorsFile::open(path);
    const auto& v = file.at("video");
    if (v.shape.size() != 4 || v.shape[3] != 3 || v.dtype != DType::F32) return k;
    const auto* data = reinterpret_cast<const float*>(v.data);
    k.rgb.assign(data, data + v.shape[0] * v.shape[1] * v.shape[2] * 3);
    k.frames = v.shape[0], k.height = v.shape[1], k.width = v.shape[2];
  } catch (const std::exception&) {
    k = {};
  }
  return k;
}

std::vector<uint8_t> mp4_of(const KeptVideo& k) {
  if (k.rgb.empty()) return {};
  try {
    return encode_mp4(k.rgb.data(), k.frames, k.height, k.width);
  } catch (const std::exception&) {
    return {};
  }
}

std::string escape_script(std::string s) {
  // A JSON island must not close its own <script> element.
  for (size_t i = 0; (i = s.find("</", i)) != std::string::npos; i += 3) s.replace(i, 2, "<\\/");
  return s;
}

}  // namespace

json gather(const db::Store& store, const ReportOptions& o) {
  json missing = json::array();
  json d;
  d["format"] = "astraea-report";
  d["version"] = 1;
  d["peers"] = peers(store, o.step_costs, missing);
  d["summary"] = summary(store, o, missing);
  d["latency"] = latency(store, missing);
  d["study"] = study(store, o, missing);
  d["scaling"] = scaling(store, missing);
  d["provenance"] = provenance(store);
  if (!o.runs.empty()) d["provenance"]["runs_shown"] = o.runs;  // the summary and videos are a selection
  d["missing"] = missing;
  return d;
}

std::vector<VideoPair> gather_videos(const db::Store& store, const ReportOptions& o) {
  const auto runs = store.query(
      "SELECT r.config_json, (SELECT m.value FROM measurements m WHERE m.run_id = r.id AND m.name = 'psnr') "
      "FROM runs r "
      "WHERE r.kind = 'sweep-cell' AND json_extract(r.config_json, '$.video') IS NOT NULL" +
          runs_filter("r.id") + " ORDER BY r.id",
      {runs_ranges(o)});
  std::map<std::string, std::string> dense;  // (model, size, prompt, seed) -> video path
  std::vector<std::pair<json, double>> accelerated;
  for (const auto& row : runs.rows) {
    auto c = parse_or_empty(row[0]);
    if (!shown(o, c.value("method", json::object()))) continue;
    const json key{c.value("model", ""), size_of(c), c.value("prompt", ""), c.value("seed", 0)};
    if (method_label(c.value("method", json::object())) == "dense") {
      dense[key.dump()] = c.value("video", "");
    } else {
      accelerated.emplace_back(c, number(row[1]));
    }
  }
  // By path: a dense clip serves every budget, so it is read and encoded once.
  std::map<std::string, std::pair<KeptVideo, std::vector<uint8_t>>> kept;
  auto video = [&](const std::string& path) -> const std::pair<KeptVideo, std::vector<uint8_t>>& {
    auto [it, fresh] = kept.try_emplace(path);
    if (fresh) {
      it->second.first = read_kept(path);
      it->second.second = mp4_of(it->second.first);
    }
    return it->second;
  };
  std::vector<VideoPair> out;
  for (const auto& [c, psnr] : accelerated) {
    if (static_cast<int>(out.size()) >= o.max_videos) break;
    const json key{c.value("model", ""), size_of(c), c.value("prompt", ""), c.value("seed", 0)};
    const auto d = dense.find(key.dump());
    if (d == dense.end()) continue;
    VideoPair p;
    p.caption = "\"" + c.value("prompt", std::string()) + "\", seed " + std::to_string(c.value("seed", 0)) + ", " +
                method_label(c.value("method", json::object()));
    p.psnr = psnr;
    const auto& dense_video = video(d->second);
    const auto& fast_video = video(c.value("video", ""));
    p.dense_mp4 = dense_video.second;
    p.accelerated_mp4 = fast_video.second;
    if (p.dense_mp4.empty() || p.accelerated_mp4.empty()) continue;
    if (static_cast<int64_t>(p.dense_mp4.size()) > o.max_video_bytes ||
        static_cast<int64_t>(p.accelerated_mp4.size()) > o.max_video_bytes) {
      continue;
    }
    const auto& a = fast_video.first;
    const auto& b = dense_video.first;
    if (o.difference_videos && a.frames == b.frames && a.height == b.height && a.width == b.width) {
      const auto heat = difference_heatmap(a.rgb.data(), b.rgb.data(), a.frames, a.height, a.width);
      p.difference_mp4 = encode_mp4(heat.data(), a.frames, a.height, a.width);
      if (static_cast<int64_t>(p.difference_mp4.size()) > o.max_video_bytes) p.difference_mp4.clear();
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::string render_html(const json& data, const std::vector<VideoPair>& videos, const std::string& chart_js) {
  std::string v;
  if (videos.empty()) {
    v = "<p class=\"missing\">No videos: run <code>astraea-bench sweep --videos DIR</code> with a dense budget (1) and "
        "another in the same sweep.</p>";
  }
  for (const auto& p : videos) {
    char psnr[64];
    std::snprintf(psnr, sizeof psnr, std::isinf(p.psnr) ? "PSNR inf" : "PSNR %.2f dB", p.psnr);
    v += "<figure class=\"pair\"><div class=\"videos\">";
    char scale[96];
    std::snprintf(scale, sizeof scale, "difference (black: equal; yellow: %.2f or more)", kDifferenceFullScale);
    const std::pair<const std::vector<uint8_t>*, std::string> clips[] = {
        {&p.dense_mp4, "dense"}, {&p.accelerated_mp4, "accelerated"}, {&p.difference_mp4, scale}};
    for (const auto& [clip, label] : clips) {
      if (clip->empty()) continue;
      v += "<div><div class=\"label\">" + label +
           "</div><video controls loop muted autoplay playsinline width=\"288\"><source type=\"video/mp4\" src=\"data:video/mp4;base64," +
           base64(*clip) + "\"></video></div>";
    }
    v += "</div><figcaption>" + p.caption + " &middot; " + psnr + "</figcaption></figure>";
  }
  // The page is reports/assets/report.html, embedded at build time, with its style sheet and
  // script; the placeholders take the data island, the videos and Chart.js.
  std::string html(embedded_file("report.html"));
  const std::pair<std::string, std::string> parts[] = {
      {"{{css}}", std::string(embedded_file("report.css"))},
      {"{{videos}}", v},
      {"{{data}}", escape_script(data.dump(1))},
      {"{{chart_js}}", escape_script(chart_js)},
      {"{{script}}", std::string(embedded_file("report.js"))}};
  size_t from = 0;  // in page order, after what was put in already: a prompt may read "{{data}}"
  for (const auto& [placeholder, text] : parts) {
    const auto at = html.find(placeholder, from);
    if (at == std::string::npos)
      throw std::logic_error("report.html has no " + placeholder + " after byte " + std::to_string(from));
    html.replace(at, placeholder.size(), text);
    from = at + text.size();
  }
  return html;
}

}  // namespace astraea::reports
