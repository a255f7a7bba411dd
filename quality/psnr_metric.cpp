// The fidelity metric: PSNR, SSIM and MSE of a video against its dense reference (fidelity() in
// video_metrics.h). Its headline is the mean per-frame PSNR, capped at 60 dB when averaged.
#include "quality/metric.h"

namespace astraea::quality {
namespace {

std::vector<Measurement> score_psnr(const MetricInput& in) {
  const auto f = fidelity(*in.video, *in.reference);
  return {
      {"psnr", "dB", f.psnr}, {"psnr_video", "dB", f.psnr_video}, {"ssim", "", f.ssim}, {"mse", "", f.mse}};
}

}  // namespace

Metric psnr_metric() {
  Metric m;
  m.name = "psnr";
  m.summary = "fidelity to the dense reference: PSNR (per-frame mean and whole video), SSIM, MSE";
  m.needs_reference = true;
  m.headline = "psnr";
  m.cap = 60;
  m.scale = 40;
  m.score = &score_psnr;
  return m;
}

}  // namespace astraea::quality
