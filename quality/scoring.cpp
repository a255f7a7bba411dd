#include "quality/scoring.h"

#include <stdexcept>

#include "core/shapes_world.h"

namespace astraea::quality {

Scores score(const at::Tensor& video, const at::Tensor* reference, const std::string& prompt, double fps,
             const MetricSet& metrics) {
  Scores s;
  if (metrics.fidelity) {
    if (!reference) throw std::invalid_argument("PSNR and SSIM need a reference video");
    s.fidelity = fidelity(video, *reference);
  }
  if (metrics.vbench) {
    std::optional<shapes::Prompt> parsed;
    if (!prompt.empty()) parsed = shapes::parse_prompt(prompt);
    s.vbench = vbench_proxy(video, fps, parsed ? &*parsed : nullptr);
  }
  return s;
}

}  // namespace astraea::quality
