#include "shapes/box_filter.h"

#include <algorithm>

namespace astraea::shapes {

std::vector<float> box3(const float* in, int count, int height, int width, int channels) {
  std::vector<float> tmp(static_cast<size_t>(count) * height * width * channels), out(tmp.size());
  auto at = [&](int n, int y, int x) {
    return (static_cast<size_t>(n) * height + y) * width * channels + x * channels;
  };
  for (int n = 0; n < count; ++n)
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        int xa = std::max(0, x - 1), xb = std::min(width - 1, x + 1);
        for (int k = 0; k < channels; ++k) {
          float sum = 0;
          for (int xx = xa; xx <= xb; ++xx) sum += in[at(n, y, xx) + k];
          tmp[at(n, y, x) + k] = sum / (xb - xa + 1);
        }
      }
  for (int n = 0; n < count; ++n)
    for (int y = 0; y < height; ++y) {
      int ya = std::max(0, y - 1), yb = std::min(height - 1, y + 1);
      for (int x = 0; x < width; ++x)
        for (int k = 0; k < channels; ++k) {
          float sum = 0;
          for (int yy = ya; yy <= yb; ++yy) sum += tmp[at(n, yy, x) + k];
          out[at(n, y, x) + k] = sum / (yb - ya + 1);
        }
    }
  return out;
}

}  // namespace astraea::shapes
