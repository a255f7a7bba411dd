// The report's difference heat map of two videos.
#include <algorithm>
#include <cmath>
#include <vector>

#include "reports/report.h"

namespace astraea::reports {

std::vector<float> difference_heatmap(const float* a, const float* b, int64_t frames, int64_t height,
                                      int64_t width) {
  // Colour stops of the ramp, at t = 0, 1/3, 2/3, 1: black, purple, orange, yellow.
  static constexpr float kStops[4][3] = {
      {0, 0, 0}, {0.45f, 0.1f, 0.55f}, {0.95f, 0.45f, 0.1f}, {1, 0.95f, 0.3f}};
  const int64_t pixels = frames * height * width;
  std::vector<float> out(static_cast<size_t>(pixels * 3));
  for (int64_t i = 0; i < pixels; ++i) {
    float d = 0;
    for (int c = 0; c < 3; ++c) d += std::fabs(a[i * 3 + c] - b[i * 3 + c]);
    const float t = std::min(1.0f, d / 3.0f / kDifferenceFullScale) * 3.0f;  // position along the 3 segments
    const int seg = std::min(2, static_cast<int>(t));
    const float f = t - static_cast<float>(seg);
    for (int c = 0; c < 3; ++c)
      out[static_cast<size_t>(i * 3 + c)] = kStops[seg][c] + f * (kStops[seg + 1][c] - kStops[seg][c]);
  }
  return out;
}

}  // namespace astraea::reports
