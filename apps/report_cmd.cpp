// astraea-bench report: the store as one self-contained HTML file that opens offline.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/commands.h"
#include "apps/provenance.h"
#include "io/atomic_file.h"
#include "db/store.h"
#include "reports/report.h"

namespace astraea::app {
namespace {

struct ReportFlags {
  std::string db = "astraea.db", out, chart_js;
  reports::ReportOptions options;
  double max_video_mb = 4;
  std::string runs;  // "3,10-20"
};

// --runs: comma-separated run ids and inclusive ranges A-B.
std::vector<std::pair<int64_t, int64_t>> parse_runs(const std::string& text) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& item : split_list(text)) {
    long long lo = 0, hi = 0;
    char tail = 0;
    if (std::sscanf(item.c_str(), "%lld-%lld%c", &lo, &hi, &tail) == 2) {
    } else if (std::sscanf(item.c_str(), "%lld%c", &lo, &tail) == 1) {
      hi = lo;
    } else {
      throw UsageError("--runs item '" + item + "' is not a run id or a range A-B");
    }
    if (lo < 1 || hi < lo) throw UsageError("--runs item '" + item + "' is not a range of run ids from 1");
    out.emplace_back(lo, hi);
  }
  if (out.empty()) throw UsageError("--runs names no run");
  return out;
}

void run(const ReportFlags& f) {
  check_output_path("--out", f.out, {".html"});
  require_existing_db(f.db);
  const std::string js_path = f.chart_js.empty()
                                  ? std::string(ASTRAEA_SOURCE_DIR) + "/node_modules/chart.js/dist/chart.umd.js"
                                  : f.chart_js;
  std::ifstream js_in(js_path);
  if (!js_in) {
    throw UsageError("--chart-js " + js_path + " cannot be read: run scripts/install-deps.sh (npm ci installs Chart.js)");
  }
  std::stringstream js;
  js << js_in.rdbuf();
  auto options = f.options;
  options.max_video_bytes = static_cast<int64_t>(f.max_video_mb * 1024 * 1024);
  if (!f.runs.empty()) options.runs = parse_runs(f.runs);
  const auto store = db::Store::open(f.db);
  const auto data = reports::gather(store, options);
  const auto videos = reports::gather_videos(store, options);
  const std::string html = reports::render_html(data, videos, js.str());
  if (!write_file_atomically(f.out, html).empty()) throw std::runtime_error("--out " + f.out + ": cannot write");
  std::printf("wrote %s (%.1f MB): %zu summary rows, %zu profiled budgets, %s, %zu video pairs%s\n", f.out.c_str(),
              static_cast<double>(html.size()) / 1e6, data["summary"].size(), data["latency"].size(),
              data["study"].is_null() ? "no study" : ("study " + data["study"]["name"].get<std::string>()).c_str(),
              videos.size(), data["missing"].empty() ? "" : " (some sections empty: see the report)");
}

}  // namespace

void register_report(CLI::App& app) {
  auto f = std::make_shared<ReportFlags>();
  auto* sub = app.add_subcommand("report", "Write the store as one self-contained HTML report");
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  sub->add_option("--study", f->options.study, "the study to show (default: the newest)");
  sub->add_option("--out", f->out, "the report, .html")->required();
  sub->add_option("--max-videos", f->options.max_videos, "video pairs embedded at most")->default_val(4)->check(CLI::Range(0, 64));
  sub->add_option("--max-video-mb", f->max_video_mb, "larger videos are left out")->default_val(4.0);
  sub->add_flag("!--no-difference", f->options.difference_videos,
                "leave out the difference heat map beside each video pair");
  sub->add_option("--runs", f->runs, "show only these sweep cells in the summary and videos: run ids and ranges, "
                  "e.g. 3,10-20 (query runs lists them)");
  sub->add_option(
      "--method", f->options.method,
      "show only the sweep cells of this method (astraea-bench methods), beside their dense cells");
  sub->add_option(
      "--step-costs", f->options.step_costs,
      "price each sweep cell's step actions with this table (astraea_peer_actions_bench --json) in "
      "the methods chart");
  sub->add_option("--chart-js", f->chart_js, "Chart.js UMD build to inline (default: the checkout's node_modules)");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
