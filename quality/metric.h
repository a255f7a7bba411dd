// The registry of video metrics: each is one file in quality/ and one line in quality/metric.cpp's
// table. Commands reach them by name (`--metrics psnr,vbench-proxy`, `tune --fitness`), and every
// score is a list of named measurements, the names profile, sweep, the store and the report share.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "quality/video_metrics.h"

namespace astraea::quality {

/// One named number a metric gives ("psnr" in "dB").
struct Measurement {
  std::string name;
  std::string unit;
  double value = 0;
};

/// What a metric scores: VIDEO ([frames, height, width, 3] floats in [0, 1], any device), with the
/// dense REFERENCE of the same shape when the metric needs one, SEMANTIC when a prompt's world can
/// judge the video, and the frame rate.
struct MetricInput {
  const at::Tensor* video = nullptr;
  const at::Tensor* reference = nullptr;
  const SemanticCheck* semantic = nullptr;
  double fps = 16;
  /// The same video as VBench reads it, where that differs (an MP4 decoded as cv2.VideoCapture
  /// does: io/video_io.h, VideoDecode::kOpenCv); metrics with `reads_as_vbench` score it instead.
  const at::Tensor* vbench_video = nullptr;
};

/// A registered metric.
struct Metric {
  std::string name;  ///< as --metrics names it
  std::string summary;
  bool needs_reference = false;  ///< scores against the dense reference
  bool judges_prompt = false;    ///< reads MetricInput::semantic when there is a prompt
  bool reads_as_vbench = false;  ///< scores MetricInput::vbench_video when given
  /// The measurement that stands for the metric (a study's fitness term); it is averaged over
  /// videos capped at `cap` (identical videos have +inf PSNR), and divided by `scale` when several
  /// metrics make one fitness.
  std::string headline;
  double cap = std::numeric_limits<double>::infinity();
  double scale = 1;
  /// Whether a video of this size can be scored (null: any); `score` throws for others.
  bool (*applies)(int64_t frames, int64_t height, int64_t width) = nullptr;
  /// The measurements of one video, headline among them. Throws std::invalid_argument for input
  /// it cannot score.
  std::vector<Measurement> (*score)(const MetricInput& input) = nullptr;
};

/// Every registered metric, in the table's order (the order scores print in).
const std::vector<Metric>& metrics();
/// The metric NAME; a FieldError naming FIELD and listing the registered ones for another name.
const Metric& metric(const std::string& name, const char* field = "metrics");

/// Metrics by name, in the order given.
using MetricList = std::vector<const Metric*>;
/// "NAME[,NAME...]", or "both" for psnr and vbench-proxy. A FieldError naming FIELD for an unknown
/// or repeated name, or an empty list.
MetricList parse_metrics(const std::string& text, const char* field = "metrics");
/// Whether any of METRICS needs the dense reference / reads the prompt.
bool needs_reference(const MetricList& metrics);
bool reads_as_vbench(const MetricList& metrics);
bool judges_prompt(const MetricList& metrics);
/// METRICS without those that need a reference (what a dense video, its own reference, gets).
MetricList without_reference(const MetricList& metrics);

/// One video's measurements, metric by metric.
struct Scores {
  std::vector<std::pair<const Metric*, std::vector<Measurement>>> by_metric;

  /// Every measurement, in metric order.
  std::vector<Measurement> all() const;
  /// The measurement NAME, if scored.
  std::optional<double> value(const std::string& name) const;
  /// METRIC's headline capped at its cap, if scored.
  std::optional<double> headline(const Metric& metric) const;
};

/// Scores INPUT with each of METRICS. std::invalid_argument naming the metric when one needs a
/// reference and INPUT has none.
Scores score(const MetricList& metrics, const MetricInput& input);

/// One number from each metric's mean headline (HEADLINES by metric name): that headline for one
/// metric, else the mean of headline / scale. std::invalid_argument when one is missing.
double combine(const MetricList& metrics, const std::map<std::string, double>& headlines);

/// The metrics of the table (quality/psnr_metric.cpp, quality/vbench_proxy_metric.cpp, ...).
Metric psnr_metric();
Metric vbench_proxy_metric();

}  // namespace astraea::quality
