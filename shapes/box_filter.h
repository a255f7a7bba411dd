// The checker's smoothing filter.
#pragma once

#include <vector>

namespace astraea::shapes {

/// 3x3 box filter over each of COUNT planes of HEIGHT x WIDTH x CHANNELS floats, the window
/// clipped at the border (so a flat image stays flat).
std::vector<float> box3(const float* in, int count, int height, int width, int channels);

}  // namespace astraea::shapes
