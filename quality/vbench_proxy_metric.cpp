// The VBench-proxy metric: VBench's quality dimensions that need no network and, with a prompt,
// its semantic ones as the prompt's world judges them (vbench_proxy() in video_metrics.h).
#include "quality/metric.h"

namespace astraea::quality {
namespace {

std::vector<Measurement> score_vbench(const MetricInput& in) {
  const auto v = vbench_proxy(in.vbench_video ? *in.vbench_video : *in.video, in.fps, in.semantic);
  std::vector<Measurement> r{{"temporal_flickering", "", v.temporal_flickering},
                             {"static_filter", "", v.static_video ? 1.0 : 0.0},
                             {"dynamic_degree", "", v.dynamic ? 1.0 : 0.0},
                             {"motion_smoothness", "", v.motion_smoothness}};
  for (const auto& [k, value] : v.semantic) r.push_back({"adherence_" + k, "", value});
  r.push_back({"vbench_proxy_quality", "", v.quality_score});
  if (v.semantic_score) r.push_back({"vbench_proxy_semantic", "", *v.semantic_score});
  r.push_back({"vbench_proxy_total", "", v.total});
  return r;
}

bool applies(int64_t frames, int64_t height, int64_t width) {
  return has_optical_flow() && vbench_applies(frames, height, width);
}

}  // namespace

Metric vbench_proxy_metric() {
  Metric m;
  m.name = "vbench-proxy";
  m.summary =
      "VBench's temporal flickering, dynamic degree and motion smoothness without networks; with a "
      "prompt, its semantic dimensions";
  m.judges_prompt = true;
  m.reads_as_vbench = true;
  m.headline = "vbench_proxy_total";
  m.applies = &applies;
  m.score = &score_vbench;
  return m;
}

}  // namespace astraea::quality
