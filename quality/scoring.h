// One video's scores under a metric set: fidelity against a reference and the VBench-proxy
// dimensions (with the shapes world's semantic ones when a prompt is given).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

#include "quality/video_metrics.h"

namespace astraea::quality {

struct Scores {
  std::optional<Fidelity> fidelity;
  std::optional<VBenchProxy> vbench;
};

/// Scores VIDEO with METRICS: fidelity needs REFERENCE (std::invalid_argument without one),
/// VBench-proxy takes its semantic dimensions from SEMANTIC when given.
Scores score(const at::Tensor& video, const at::Tensor* reference, const SemanticCheck* semantic, double fps,
             const MetricSet& metrics);

}  // namespace astraea::quality
