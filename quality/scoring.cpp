#include "quality/scoring.h"

#include <stdexcept>

namespace astraea::quality {

Scores score(const at::Tensor& video, const at::Tensor* reference, const SemanticCheck* semantic, double fps,
             const MetricSet& metrics) {
  Scores s;
  if (metrics.fidelity) {
    if (!reference) throw std::invalid_argument("PSNR and SSIM need a reference video");
    s.fidelity = fidelity(video, *reference);
  }
  if (metrics.vbench) s.vbench = vbench_proxy(video, fps, semantic);
  return s;
}

}  // namespace astraea::quality
