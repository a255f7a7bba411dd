// The shapes world's clips: a prompt laid out as object tracks (seeded), and the tracks rendered to
// RGB frames with anti-aliased edges on a plain or textured background.
#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

#include "shapes/seeded_random.h"
#include "shapes/shapes_world.h"

namespace astraea::shapes {
namespace {

using Rgb = std::array<float, 3>;

constexpr double kMinSizeFrac = 0.22, kMaxSizeFrac = 0.30;      // of min(height, width)
constexpr double kMinTravelFrac = 0.30, kMaxTravelFrac = 0.50;  // of the side moved along
constexpr double kMarginPx = 1.0;                               // keeps objects off the frame's edge pixels
constexpr int kLayoutAttempts = 500;
constexpr int kSubsamples = 8;  // per axis, for edge pixels

// Tone index (0 or 1; always 0 on a plain background) of the background at a pixel. The pattern is fixed, not
// seeded, so the model can learn it and the checker can rely on both tones appearing along the border.
int texture_tone(Background background, int x, int y, int height, int width) {
  int side = std::min(height, width);
  if (background == Background::kCheckered) {
    int cell = std::max(4, side / 8);
    return (x / cell + y / cell) % 2;
  }
  if (background == Background::kStriped) {
    int period = std::max(8, side / 4);  // horizontal bands, dark first
    return (y % period) < period / 2 ? 1 : 0;
  }
  return 0;
}

bool inside(Shape shape, double dx, double dy, double half) {
  switch (shape) {
    case Shape::kCircle:
      return dx * dx + dy * dy <= half * half;
    case Shape::kSquare:
      return std::abs(dx) <= half && std::abs(dy) <= half;
    case Shape::kTriangle:  // apex at (0, -half), base along dy = +half
      return dy <= half && std::abs(dx) <= (dy + half) / 2;
  }
  return false;
}

// One object's path: random size and start, end = start + travel along its motion's axis.
ObjectTrack sample_track(const ObjectSpec& spec, std::mt19937_64& rng, int height, int width) {
  ObjectTrack t;
  t.spec = spec;
  t.size = uniform(rng, kMinSizeFrac, kMaxSizeFrac) * std::min(height, width);
  double dx = 0, dy = 0;
  switch (spec.motion) {
    case Motion::kLeft:
      dx = -uniform(rng, kMinTravelFrac, kMaxTravelFrac) * width;
      break;
    case Motion::kRight:
      dx = uniform(rng, kMinTravelFrac, kMaxTravelFrac) * width;
      break;
    case Motion::kUp:
      dy = -uniform(rng, kMinTravelFrac, kMaxTravelFrac) * height;
      break;
    case Motion::kDown:
      dy = uniform(rng, kMinTravelFrac, kMaxTravelFrac) * height;
      break;
    case Motion::kStill:
      break;
  }
  double lo = kMarginPx + t.size / 2;
  t.x0 = uniform(rng, lo - std::min(0.0, dx), width - lo - std::max(0.0, dx));
  t.y0 = uniform(rng, lo - std::min(0.0, dy), height - lo - std::max(0.0, dy));
  t.x1 = t.x0 + dx;
  t.y1 = t.y0 + dy;
  return t;
}

double lerp(double a, double b, double t) { return a + (b - a) * t; }
double frame_time(int frame, int frames) {
  return frames > 1 ? static_cast<double>(frame) / (frames - 1) : 0.0;
}

// The smallest gap between the two objects' bounding boxes over all frames (negative: overlap).
double min_gap_px(const ObjectTrack& a, const ObjectTrack& b, int frames) {
  double gap = INFINITY, half = (a.size + b.size) / 2;
  for (int f = 0; f < frames; ++f) {
    double t = frame_time(f, frames);
    double gx = std::abs(lerp(a.x0, a.x1, t) - lerp(b.x0, b.x1, t)) - half;
    double gy = std::abs(lerp(a.y0, a.y1, t) - lerp(b.y0, b.y1, t)) - half;
    gap = std::min(gap, std::max(gx, gy));
  }
  return gap;
}

}  // namespace

Clip layout_clip(const Prompt& prompt, uint64_t seed, int frames, int height, int width) {
  if (frames < 1 || height < 16 || width < 16)
    throw std::invalid_argument("layout_clip: needs frames >= 1 and height, width >= 16, got " +
                                std::to_string(frames) + " x " + std::to_string(height) + " x " +
                                std::to_string(width));
  if (prompt.objects.empty() || static_cast<int>(prompt.objects.size()) > kMaxObjects)
    throw std::invalid_argument("layout_clip: a prompt has 1 or 2 objects, got " +
                                std::to_string(prompt.objects.size()));
  Clip clip{prompt, {}, frames, height, width, seed};
  std::mt19937_64 rng(seed);
  // Rejection sampling: a gap of a few pixels keeps two same-coloured objects separable after
  // blur. Tiny frames may not allow it; then the layout with the largest gap wins.
  double want_gap = std::max(2.0, 0.08 * std::min(height, width)), best_gap = -INFINITY;
  for (int attempt = 0; attempt < kLayoutAttempts; ++attempt) {
    std::vector<ObjectTrack> tracks;
    for (const ObjectSpec& spec : prompt.objects) tracks.push_back(sample_track(spec, rng, height, width));
    double gap = tracks.size() < 2 ? INFINITY : min_gap_px(tracks[0], tracks[1], frames);
    if (gap > best_gap) {
      best_gap = gap;
      clip.objects = tracks;
    }
    if (gap >= want_gap) break;
  }
  return clip;
}

double shape_coverage(Shape shape, double cx, double cy, double size, int x, int y) {
  double half = size / 2;
  if (x + 1 <= cx - half || x >= cx + half || y + 1 <= cy - half || y >= cy + half) return 0;
  // All shapes are convex: a pixel with its four corners inside is covered.
  bool all = true;
  for (int c = 0; c < 4 && all; ++c) all = inside(shape, x + (c & 1) - cx, y + (c >> 1) - cy, half);
  if (all) return 1;
  int hits = 0;
  for (int i = 0; i < kSubsamples; ++i)
    for (int j = 0; j < kSubsamples; ++j)
      hits += inside(shape, x + (j + 0.5) / kSubsamples - cx, y + (i + 0.5) / kSubsamples - cy, half);
  return static_cast<double>(hits) / (kSubsamples * kSubsamples);
}

std::vector<float> render_clip(const Clip& clip) {
  const int F = clip.frames, H = clip.height, W = clip.width;
  std::vector<float> rgb(static_cast<size_t>(F) * H * W * 3);
  auto tones = background_tones(clip.prompt.background);
  for (int f = 0; f < F; ++f) {
    float* frame = rgb.data() + static_cast<size_t>(f) * H * W * 3;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const Rgb& c = tones[texture_tone(clip.prompt.background, x, y, H, W)];
        std::copy(c.begin(), c.end(), frame + (static_cast<size_t>(y) * W + x) * 3);
      }
    double t = frame_time(f, F);
    for (const ObjectTrack& o : clip.objects) {
      double cx = lerp(o.x0, o.x1, t), cy = lerp(o.y0, o.y1, t), half = o.size / 2;
      Rgb c = colour_rgb(o.spec.colour);
      int xa = std::max(0, static_cast<int>(std::floor(cx - half))),
          xb = std::min(W - 1, static_cast<int>(cx + half));
      int ya = std::max(0, static_cast<int>(std::floor(cy - half))),
          yb = std::min(H - 1, static_cast<int>(cy + half));
      for (int y = ya; y <= yb; ++y)
        for (int x = xa; x <= xb; ++x) {
          float cover = static_cast<float>(shape_coverage(o.spec.shape, cx, cy, o.size, x, y));
          if (cover == 0) continue;
          float* p = frame + (static_cast<size_t>(y) * W + x) * 3;
          for (int k = 0; k < 3; ++k) p[k] = p[k] * (1 - cover) + c[k] * cover;  // exact c when covered
        }
    }
  }
  return rgb;
}

}  // namespace astraea::shapes
