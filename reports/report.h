// The HTML report: what the store knows, as one self-contained file that opens offline. The data
// goes into a JSON island (<script type="application/json" id="astraea-data">), the charts are
// drawn by Chart.js (npm, inlined), and videos are embedded as H.264 MP4 data URLs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "db/store.h"

namespace astraea::reports {

struct ReportOptions {
  std::string study;       ///< the study for the Pareto, schedule and convergence sections ("": the newest)
  int max_videos = 4;      ///< video pairs embedded at most
  int64_t max_video_bytes = 4 << 20;  ///< per video file; larger ones are listed, not embedded
  bool difference_videos = true;      ///< a third video per pair: where the two differ, as a heat map
  /// Sweep cells (summary and videos) restricted to these inclusive run-id ranges; empty: all.
  std::vector<std::pair<int64_t, int64_t>> runs;
  /// Sweep cells of this method only (its registered name: "astraea", "dense", ...), with the dense
  /// cells they are compared against; "": every method.
  std::string method;
  /// A step-cost table (engine/step_costs.h) that prices each sweep cell's step actions for the
  /// methods chart; "": measured speed only.
  std::string step_costs;
};

/// Everything the report shows, from the store: deterministic for a given store content (no
/// timestamps), so it can be checked against a golden file. Sections the store cannot fill are
/// listed under "missing" with the command that would fill them.
nlohmann::json gather(const db::Store& store, const ReportOptions& options);

/// One embedded video pair: the dense and the accelerated video of one prompt and seed, and
/// optionally their difference heat map.
struct VideoPair {
  std::string caption;
  double psnr = 0;
  std::vector<uint8_t> dense_mp4, accelerated_mp4, difference_mp4;
};

/// Full scale of the heat map: a mean absolute RGB difference of this much (a quarter of the
/// range) or more is drawn at the top colour.
inline constexpr float kDifferenceFullScale = 0.25f;

/// The heat map of two float RGB videos [frames, height, width, 3] in [0, 1] of the same shape:
/// per pixel, the mean over channels of |a - b|, scaled by kDifferenceFullScale and coloured
/// black (equal) -> purple -> orange -> yellow (full scale). Returns the same layout.
std::vector<float> difference_heatmap(const float* a, const float* b, int64_t frames, int64_t height, int64_t width);

/// Video pairs from sweep cells that kept their videos (sweep --videos), encoded as MP4.
std::vector<VideoPair> gather_videos(const db::Store& store, const ReportOptions& options);

/// The HTML page: DATA as the JSON island, CHART_JS (the library's UMD build) inlined.
std::string render_html(const nlohmann::json& data, const std::vector<VideoPair>& videos, const std::string& chart_js);

}  // namespace astraea::reports
