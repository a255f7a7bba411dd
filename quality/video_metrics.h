// Video quality: fidelity to a reference (MSE, PSNR, SSIM) and VBench's dimensions that need no
// pretrained network (temporal flickering with its static filter, dynamic degree, motion
// smoothness), with classical optical flow where VBench uses RAFT and AMT. docs/quality.md says
// how each differs from VBench and why.
//
// Videos are float RGB in [0, 1], laid out [frames, height, width, 3], on any device.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace astraea::quality {

/// Fidelity of VIDEO to REFERENCE (same shape). PSNR is over a data range of 1; identical frames
/// give +infinity, never NaN.
struct Fidelity {
  std::vector<double> mse_per_frame, psnr_per_frame, ssim_per_frame;
  double mse = 0;         ///< over the whole video
  double psnr = 0;        ///< mean of the per-frame PSNRs (as PAB, TeaCache and Sparse VideoGen report)
  double psnr_video = 0;  ///< from the whole video's MSE
  double ssim = 0;        ///< mean of the per-frame SSIMs
};

/// Computes in LibTorch on the tensors' device. SSIM: Wang et al. 2004, an 11x11 Gaussian window
/// of sigma 1.5, K1 0.01, K2 0.03, per colour channel over the valid region, then averaged.
/// Throws std::invalid_argument for shapes that differ or frames under 11 pixels a side.
Fidelity fidelity(const at::Tensor& video, const at::Tensor& reference);

/// Whether this build has OpenCV (needed for the flow-based dimensions).
bool has_optical_flow();

/// Whether vbench_proxy takes a video of this size (at least 3 frames of 16x16 pixels).
bool vbench_applies(int64_t frames, int64_t height, int64_t width);

/// Dense optical flow from frame A to frame B (8-bit grayscale, same size): [H, W, 2] pixels.
/// Farneback's method (OpenCV). Throws std::runtime_error without OpenCV.
std::vector<float> optical_flow(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, int height, int width);

/// VBench's normalisation of its quality dimensions (scripts/constant.py: NORMALIZE_DIC and
/// DIM_WEIGHT), checked against VBench's file by tests/fixtures/vbench/expected.json.
struct VBenchBound {
  double min, max, weight;
};
inline constexpr VBenchBound kFlickeringBound{0.6293, 1.0, 1.0}, kSmoothnessBound{0.706, 0.9975, 1.0},
    kDynamicBound{0.0, 1.0, 0.5};

/// VBench's static filter on its flow SCORES (static_filter.py: check_static, set_params): the
/// top-2% flow magnitudes of each consecutive pair of FRAMES frames of HEIGHT x WIDTH, then of the
/// first -> last and last -> first pairs. Static unless more than round(2 F / 16) consecutive pairs
/// exceed 3 (min side / 256) pixels, or a wrap-around pair exceeds twice that times the count.
bool vbench_static(const std::vector<double>& scores, int64_t frames, int64_t height, int64_t width);

/// VBench's dimensions without networks.
struct VBenchProxy {
  double temporal_flickering = 0;     ///< (255 - mean MAE of consecutive frames) / 255
  bool static_video = false;          ///< VBench's static filter (flickering is defined on static videos)
  bool dynamic = false;               ///< VBench's dynamic degree of one video: 0 or 1
  std::vector<double> flow_scores;    ///< per sampled frame pair: mean of the top 5% flow magnitudes
  double motion_smoothness = 0;       ///< (255 - MAE of interpolated odd frames) / 255
  std::map<std::string, double> semantic;  ///< colour, shape, motion, background agreement (with a prompt)
  double quality_score = 0;  ///< VBench's weighted mean of min-max normalised quality dimensions
  std::optional<double> semantic_score;  ///< the same over the semantic dimensions, with a prompt
  double total = 0;          ///< (4 quality + 1 semantic) / 5 as VBench weighs them; quality alone without a prompt
};

/// VBench's semantic dimensions of one video, judged by whatever knows its prompt's world (for the
/// tiny model, the shapes world's checker: shapes/semantic_check.h).
class SemanticCheck {
 public:
  virtual ~SemanticCheck() = default;
  /// Agreement of the video RGB ([FRAMES, HEIGHT, WIDTH, 3] floats in [0, 1]) with the prompt, by
  /// dimension ("colour", "shape", ...), each in [0, 1].
  virtual std::map<std::string, double> agreement(const float* rgb, int frames, int height,
                                                  int width) const = 0;
};

/// Scores VIDEO (on any device; copied to the CPU). FPS is the video's frame rate: dynamic degree
/// samples frames at 8 per second as VBench does. With SEMANTIC, the semantic dimensions are its
/// verdicts. Needs OpenCV and at least 3 frames of 16 pixels.
VBenchProxy vbench_proxy(const at::Tensor& video, double fps, const SemanticCheck* semantic = nullptr);

}  // namespace astraea::quality
