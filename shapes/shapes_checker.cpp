#include "shapes/shapes_checker.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "shapes/box_filter.h"

namespace astraea::shapes {
namespace {

using shapes::Background;
using shapes::Colour;
using shapes::Motion;
using shapes::Shape;
using Rgb = std::array<float, 3>;

// Distances are Euclidean in RGB. The palettes keep object colours >= 0.44 apart and >= 0.49 from
// every background, so the colour thresholds sit near half of that.
// A border pixel further than this from a background costs the same for every background.
constexpr double kBackgroundTruncation = 0.25;
// A textured background's border pixels must spread at least this (std of their position between
// its two tones); a plain background lying on the segment would match it otherwise.
constexpr double kTextureSpread = 0.15;
constexpr double kForeground = 0.2;         // distance from the background that makes a pixel foreground
constexpr double kMaxResidualFrac = 0.5;    // of that distance: a colour must explain the pixel this well
constexpr double kMinToneAngleSin2 = 0.1;   // colour vs tone line, for splitting a mix three ways
constexpr double kMinBlobAreaFrac = 0.008;  // of min(H, W)^2; the smallest object covers ~0.024
constexpr double kMinCoreAlpha = 0.45;      // a blob needs a pixel at least this close to pure colour
constexpr double kNoiseAlpha = 0.1;         // below this a pixel's colour weight counts as noise
constexpr double kStillFrac = 0.15;         // of the side moved along; objects move 0.30-0.50
constexpr int kTracksPerColour = 2;         // a prompt has at most two objects
// The checker smooths frames with a 3x3 box first (noise drops 3x; the shape templates model the
// blur), except in frames so small that objects are only 4-7 pixels wide.
constexpr int kMinSmoothedSide = 32;
constexpr double kPi = 3.14159265358979323846;

double dot(const Rgb& a, const Rgb& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
Rgb sub(const Rgb& a, const Rgb& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
Rgb axpy(float t, const Rgb& u, const Rgb& a) { return {a[0] + t * u[0], a[1] + t * u[1], a[2] + t * u[2]}; }

// A background's colours: the segment between its two tones (a point for plain backgrounds). A
// blurred texture's pixels lie on the segment, so distance to it separates foreground from any mix
// of the tones.
struct ToneSegment {
  Rgb a, b;
  // Position t in [0, 1] of P's projection onto the segment.
  float position(const Rgb& p) const {
    Rgb u = sub(b, a);
    double len2 = dot(u, u);
    return len2 == 0 ? 0.0f : static_cast<float>(std::clamp(dot(sub(p, a), u) / len2, 0.0, 1.0));
  }
  Rgb nearest(const Rgb& p) const { return axpy(position(p), sub(b, a), a); }
};

// One connected same-colour region of one frame.
struct Blob {
  Colour colour;
  int pixels = 0;
  double mass = 0;                     // sum of colour weights: a blur-invariant area
  double cx = 0, cy = 0;               // weighted centroid, pixels
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // bounding box, inclusive
};

// The blobs of one colour followed over the frames.
struct Track {
  Colour colour;
  std::vector<int> blob;  // per frame: index into the frame's blobs, or -1
  int present = 0;
  double mass = 0;  // mean over present frames
  Shape shape = Shape::kCircle;
  Motion motion = Motion::kStill;
};

class Analysis {
 public:
  Analysis(const float* rgb, int frames, int height, int width)
      : F_(frames),
        H_(height),
        W_(width),
        smooth_(std::min(height, width) >= kMinSmoothedSide),
        video_(smooth_ ? box3(rgb, frames, height, width, 3)
                       : std::vector<float>(rgb, rgb + static_cast<size_t>(frames) * height * width * 3)) {
    estimate_background();
    label_pixels();
  }

  Background background() const { return background_; }

  // Up to two tracks of COLOUR present in at least half the frames, largest first.
  std::vector<Track> tracks(Colour colour) const {
    std::vector<Track> tracks;
    std::vector<std::pair<double, double>> last;
    for (int f = 0; f < F_; ++f) {
      std::vector<int> cand;
      for (int i = 0; i < static_cast<int>(blobs_[f].size()); ++i)
        if (blobs_[f][i].colour == colour) cand.push_back(i);
      std::sort(cand.begin(), cand.end(),
                [&](int a, int b) { return blobs_[f][a].mass > blobs_[f][b].mass; });
      if (cand.size() > kTracksPerColour) cand.resize(kTracksPerColour);
      auto dist = [&](int t, int i) {
        return std::hypot(last[t].first - blobs_[f][i].cx, last[t].second - blobs_[f][i].cy);
      };
      // Assign candidates to tracks by nearest last-seen centroid; with two of each, the
      // cheaper of the two pairings.
      std::vector<int> owner(cand.size(), -1);
      if (tracks.size() == 1 && !cand.empty()) {
        int best = cand.size() == 2 && dist(0, cand[1]) < dist(0, cand[0]) ? 1 : 0;
        owner[best] = 0;
      } else if (tracks.size() == 2 && cand.size() == 1) {
        owner[0] = dist(1, cand[0]) < dist(0, cand[0]) ? 1 : 0;
      } else if (tracks.size() == 2 && cand.size() == 2) {
        bool swap = dist(0, cand[1]) + dist(1, cand[0]) < dist(0, cand[0]) + dist(1, cand[1]);
        owner = swap ? std::vector<int>{1, 0} : std::vector<int>{0, 1};
      }
      for (size_t i = 0; i < cand.size(); ++i) {
        if (owner[i] < 0) {
          owner[i] = static_cast<int>(tracks.size());
          tracks.push_back({colour, std::vector<int>(F_, -1)});
          last.emplace_back();
        }
        const Blob& b = blobs_[f][cand[i]];
        tracks[owner[i]].blob[f] = cand[i];
        tracks[owner[i]].present += 1;
        tracks[owner[i]].mass += b.mass;
        last[owner[i]] = {b.cx, b.cy};
      }
    }
    std::vector<Track> kept;
    for (Track& t : tracks) {
      if (2 * t.present < F_) continue;
      t.mass /= t.present;
      t.motion = motion_of(t);
      t.shape = shape_of(t);
      kept.push_back(t);
    }
    std::sort(kept.begin(), kept.end(), [](const Track& a, const Track& b) { return a.mass > b.mass; });
    return kept;
  }

 private:
  Rgb pixel(int f, int y, int x) const {
    const float* p = &video_[((static_cast<size_t>(f) * H_ + y) * W_ + x) * 3];
    return {p[0], p[1], p[2]};
  }
  size_t index(int y, int x) const { return static_cast<size_t>(y) * W_ + x; }

  // The weight alpha of COLOUR in pixel P seen as a mix of that colour and the background, and
  // how far P is from the best such mix. On a texture the background part is itself a mix of the
  // two tones, P = a + alpha (colour - a) + beta (b - a), so an edge over a dark stripe is not
  // mistaken for a faint edge over the light one. When the colour lies on the tones' line (white
  // on gray checkers) that split is ill-posed, and the background is the tone point nearest P.
  std::pair<double, double> mix(const Rgb& p, Colour colour) const {
    Rgb c = shapes::colour_rgb(colour), w = sub(tones_.b, tones_.a), u = sub(c, tones_.a);
    double uu = std::max(1e-6, dot(u, u)), uw = dot(u, w), ww = dot(w, w), det = uu * ww - uw * uw;
    if (det > kMinToneAngleSin2 * uu * ww) {
      Rgb v = sub(p, tones_.a);
      double alpha = std::clamp((dot(v, u) * ww - dot(v, w) * uw) / det, 0.0, 1.0);
      Rgb r = axpy(-static_cast<float>(alpha), u, v);
      r = axpy(-static_cast<float>(std::clamp(dot(r, w) / ww, 0.0, 1.0 - alpha)), w, r);
      return {alpha, std::sqrt(dot(r, r))};
    }
    Rgb bg = tones_.nearest(p), v = sub(p, bg);
    u = sub(c, bg);
    double alpha = std::clamp(dot(v, u) / std::max(1e-6, dot(u, u)), 0.0, 1.0);
    Rgb r = axpy(-static_cast<float>(alpha), u, v);
    return {alpha, std::sqrt(dot(r, r))};
  }

  // Picks the background whose tones best explain the frame border, then shifts its tones by the
  // border's mean drift so a slightly off-colour background still separates cleanly.
  void estimate_background() {
    int ring = std::max(1, std::min(H_, W_) / 16);
    std::vector<Rgb> border;
    for (int f = 0; f < F_; ++f)
      for (int y = 0; y < H_; ++y)
        for (int x = 0; x < W_; ++x)
          if (y < ring || y >= H_ - ring || x < ring || x >= W_ - ring) border.push_back(pixel(f, y, x));
    double best_cost = std::numeric_limits<double>::infinity();
    for (Background b : shapes::kBackgrounds) {
      auto [ta, tb] = shapes::background_tones(b);
      ToneSegment seg{ta, tb};
      double cost = 0, n = 0, t_sum = 0, t_sq = 0;
      for (const Rgb& p : border) {
        Rgb d = sub(p, seg.nearest(p));
        double dist = std::sqrt(dot(d, d));
        cost += std::min(dist, kBackgroundTruncation);
        if (dist < kBackgroundTruncation) {
          double t = seg.position(p);
          n += 1, t_sum += t, t_sq += t * t;
        }
      }
      // A texture must show both tones; otherwise a plain background on its segment would match.
      bool textured = ta != tb;
      if (textured && (n == 0 || t_sq / n - (t_sum / n) * (t_sum / n) < kTextureSpread * kTextureSpread))
        continue;
      cost /= border.size();
      if (cost < best_cost) best_cost = cost, background_ = b;
    }
    auto [ta, tb] = shapes::background_tones(background_);
    tones_ = {ta, tb};
    Rgb drift{0, 0, 0};
    double n = 0;
    for (const Rgb& p : border) {
      Rgb d = sub(p, tones_.nearest(p));
      if (dot(d, d) < kBackgroundTruncation * kBackgroundTruncation) drift = axpy(1, d, drift), n += 1;
    }
    if (n > 0)
      tones_ = {axpy(static_cast<float>(1 / n), drift, ta), axpy(static_cast<float>(1 / n), drift, tb)};
  }

  // Labels each foreground pixel with the object colour that explains it as a mix with the
  // background (so blurred edges keep their object's colour), then collects same-colour
  // 8-connected blobs. Mixes of two objects fit no colour well and stay unlabelled.
  void label_pixels() {
    int side = std::min(H_, W_);
    int min_pixels = std::max(4, static_cast<int>(kMinBlobAreaFrac * side * side));
    blobs_.resize(F_);
    blob_of_.assign(F_, std::vector<int>(static_cast<size_t>(H_) * W_, -1));
    std::vector<int> label(static_cast<size_t>(H_) * W_);
    std::vector<float> alpha(label.size());
    for (int f = 0; f < F_; ++f) {
      for (int y = 0; y < H_; ++y)
        for (int x = 0; x < W_; ++x) {
          Rgb p = pixel(f, y, x), d = sub(p, tones_.nearest(p));
          double dist = std::sqrt(dot(d, d));
          label[index(y, x)] = -1;
          if (dist < kForeground) continue;
          double best = std::numeric_limits<double>::infinity();
          for (Colour c : shapes::kColours) {
            auto [a, residual] = mix(p, c);
            if (residual < best && residual <= kMaxResidualFrac * dist) {
              best = residual;
              label[index(y, x)] = static_cast<int>(c);
              alpha[index(y, x)] = static_cast<float>(std::clamp(a, 0.0, 1.0));
            }
          }
        }
      std::vector<int>& owner = blob_of_[f];
      std::vector<int> seen(label.size(), 0), stack, members;
      for (size_t start = 0; start < label.size(); ++start) {
        if (label[start] < 0 || seen[start]) continue;
        members.clear();
        stack.assign(1, static_cast<int>(start));
        seen[start] = 1;
        while (!stack.empty()) {
          int i = stack.back();
          stack.pop_back();
          members.push_back(i);
          int y = i / W_, x = i % W_;
          for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
              int yy = y + dy, xx = x + dx;
              if (yy < 0 || yy >= H_ || xx < 0 || xx >= W_) continue;
              size_t j = index(yy, xx);
              if (!seen[j] && label[j] == label[start]) seen[j] = 1, stack.push_back(static_cast<int>(j));
            }
        }
        Blob b{static_cast<Colour>(label[start])};
        b.x0 = W_, b.y0 = H_, b.x1 = -1, b.y1 = -1;
        float core = 0;
        for (int i : members) {
          int y = i / W_, x = i % W_;
          b.pixels += 1;
          b.mass += alpha[i];
          b.cx += alpha[i] * (x + 0.5);
          b.cy += alpha[i] * (y + 0.5);
          b.x0 = std::min(b.x0, x), b.x1 = std::max(b.x1, x), b.y0 = std::min(b.y0, y),
          b.y1 = std::max(b.y1, y);
          core = std::max(core, alpha[i]);
        }
        if (b.pixels < min_pixels || core < kMinCoreAlpha || b.mass <= 0) continue;
        b.cx /= b.mass, b.cy /= b.mass;
        for (int i : members) owner[i] = static_cast<int>(blobs_[f].size());
        blobs_[f].push_back(b);
      }
    }
  }

  // Direction of the least-squares line through the centroids: robust to frames where the blob
  // is missing or clipped, and it uses every frame against noise.
  Motion motion_of(const Track& t) const {
    double n = 0, sf = 0, sx = 0, sy = 0, sff = 0, sfx = 0, sfy = 0;
    for (int f = 0; f < F_; ++f) {
      if (t.blob[f] < 0) continue;
      const Blob& b = blobs_[f][t.blob[f]];
      n += 1, sf += f, sx += b.cx, sy += b.cy, sff += f * f, sfx += f * b.cx, sfy += f * b.cy;
    }
    if (n < 2) return Motion::kStill;
    double var = sff - sf * sf / n;
    double dx = (sfx - sf * sx / n) / var * (F_ - 1) / W_;  // travel over the clip, fraction of width
    double dy = (sfy - sf * sy / n) / var * (F_ - 1) / H_;
    if (std::max(std::abs(dx), std::abs(dy)) < kStillFrac) return Motion::kStill;
    if (std::abs(dx) >= std::abs(dy)) return dx < 0 ? Motion::kLeft : Motion::kRight;
    return dy < 0 ? Motion::kUp : Motion::kDown;
  }

  // Template matching: in each frame, render every shape with the blob's colour mass and centroid,
  // smoothed as the video was (once, and once more for blur the generator added), and keep the
  // shape with the least total |difference| over the frames. Mass and centroid are unchanged by
  // blur, so the size and place of each template need no edge detection.
  Shape shape_of(const Track& t) const {
    std::array<double, 3> error{};
    for (int f = 0; f < F_; ++f) {
      if (t.blob[f] < 0) continue;
      const Blob& b = blobs_[f][t.blob[f]];
      int pad = std::max(b.x1 - b.x0, b.y1 - b.y0) / 2 + 3;
      int x0 = std::max(0, b.x0 - pad), x1 = std::min(W_ - 1, b.x1 + pad);
      int y0 = std::max(0, b.y0 - pad), y1 = std::min(H_ - 1, b.y1 + pad);
      int w = x1 - x0 + 1, h = y1 - y0 + 1;
      std::vector<float> seen(static_cast<size_t>(w) * h);
      double mass = 0, cx = 0, cy = 0;
      for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) {
          int owner = blob_of_[f][index(y, x)];
          if (owner >= 0 && owner != t.blob[f]) continue;  // another object
          double a = mix(pixel(f, y, x), t.colour).first;
          if (a < kNoiseAlpha) continue;
          a = std::min(a, 1.0);
          seen[(y - y0) * w + (x - x0)] = static_cast<float>(a);
          mass += a, cx += a * (x + 0.5), cy += a * (y + 0.5);
        }
      if (mass <= 0) continue;
      cx /= mass, cy /= mass;
      for (Shape s : shapes::kShapes) {
        // Side from area, and the bounding-box centre from the centroid (a triangle's sits s/6
        // below its box centre).
        double size = s == Shape::kCircle   ? std::sqrt(4 * mass / kPi)
                      : s == Shape::kSquare ? std::sqrt(mass)
                                            : std::sqrt(2 * mass);
        double by = s == Shape::kTriangle ? cy - size / 6 : cy;
        std::vector<float> tpl(seen.size());
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x)
            tpl[y * w + x] = static_cast<float>(shapes::shape_coverage(s, cx, by, size, x + x0, y + y0));
        double best = std::numeric_limits<double>::infinity();
        for (int pass = 0; pass < 2; ++pass) {
          if (pass > 0 || smooth_) tpl = box3(tpl.data(), 1, h, w, 1);
          double diff = 0;
          for (size_t i = 0; i < tpl.size(); ++i) diff += std::abs(tpl[i] - seen[i]);
          best = std::min(best, diff / mass);
        }
        error[static_cast<int>(s)] += best;
      }
    }
    return static_cast<Shape>(std::min_element(error.begin(), error.end()) - error.begin());
  }

  int F_, H_, W_;
  bool smooth_;
  std::vector<float> video_;  // smoothed if smooth_
  Background background_ = Background::kBlack;
  ToneSegment tones_{};
  std::vector<std::vector<Blob>> blobs_;   // per frame
  std::vector<std::vector<int>> blob_of_;  // per frame and pixel: blob index or -1
};

void validate(const float* rgb, int frames, int height, int width, const shapes::Prompt& prompt) {
  if (rgb == nullptr || frames < 1 || height < 1 || width < 1)
    throw std::invalid_argument("check_clip: empty video (" + std::to_string(frames) + " x " +
                                std::to_string(height) + " x " + std::to_string(width) + ")");
  if (height < 8 || width < 8)
    throw std::invalid_argument("check_clip: frames of " + std::to_string(height) + " x " +
                                std::to_string(width) +
                                " are too small; the checker needs at least 8 x 8 pixels");
  size_t frame_size = static_cast<size_t>(height) * width * 3;
  for (int f = 0; f < frames; ++f)
    for (size_t i = 0; i < frame_size; ++i)
      if (!std::isfinite(rgb[f * frame_size + i]))
        throw std::invalid_argument("check_clip: frame " + std::to_string(f) +
                                    " has a non-finite value at pixel (" + std::to_string(i / 3 % width) +
                                    ", " + std::to_string(i / 3 / width) + ")");
  if (prompt.objects.empty()) throw std::invalid_argument("check_clip: the prompt has no objects");
}

}  // namespace

ClipVerdict check_clip(const float* rgb, int frames, int height, int width, const shapes::Prompt& prompt) {
  validate(rgb, frames, height, width, prompt);
  Analysis analysis(rgb, frames, height, width);
  ClipVerdict verdict;
  verdict.found_background = analysis.background();
  verdict.background_ok = verdict.found_background == prompt.background;

  const int n = static_cast<int>(prompt.objects.size());
  std::vector<Track> all;
  for (Colour c : shapes::kColours)
    for (Track& t : analysis.tracks(c)) all.push_back(std::move(t));
  std::vector<int> judged(n, -1);
  std::vector<bool> claimed(all.size(), false);
  auto agreement = [&](int obj, int track) {
    const shapes::ObjectSpec& spec = prompt.objects[obj];
    return (all[track].shape == spec.shape) + (all[track].motion == spec.motion);
  };
  // Objects of one colour take that colour's tracks (largest first); two objects of the same
  // colour take them in the pairing that agrees best with the prompt, since positions are unknown.
  for (Colour c : shapes::kColours) {
    std::vector<int> objs, cand;
    for (int i = 0; i < n; ++i)
      if (prompt.objects[i].colour == c) objs.push_back(i);
    for (int t = 0; t < static_cast<int>(all.size()); ++t)
      if (all[t].colour == c) cand.push_back(t);
    if (objs.empty() || cand.empty()) continue;
    if (objs.size() == 1) {
      judged[objs[0]] = cand[0];
    } else if (cand.size() == 1) {
      judged[agreement(objs[1], cand[0]) > agreement(objs[0], cand[0]) ? objs[1] : objs[0]] = cand[0];
    } else {
      bool swap = agreement(objs[0], cand[1]) + agreement(objs[1], cand[0]) >
                  agreement(objs[0], cand[0]) + agreement(objs[1], cand[1]);
      judged[objs[0]] = cand[swap ? 1 : 0];
      judged[objs[1]] = cand[swap ? 0 : 1];
    }
  }
  for (int t : judged)
    if (t >= 0) claimed[t] = true;
  // An object whose colour is missing is judged on the largest unclaimed track, so a wrong colour
  // does not also cost its shape and motion.
  for (int i = 0; i < n; ++i) {
    if (judged[i] >= 0) continue;
    int best = -1;
    for (int t = 0; t < static_cast<int>(all.size()); ++t)
      if (!claimed[t] && (best < 0 || all[t].mass > all[best].mass)) best = t;
    if (best >= 0) judged[i] = best, claimed[best] = true;
  }
  for (int i = 0; i < n; ++i) {
    ObjectVerdict v;
    if (judged[i] >= 0) {
      const Track& t = all[judged[i]];
      v.found = true;
      v.found_colour = t.colour, v.found_shape = t.shape, v.found_motion = t.motion;
      v.colour_ok = t.colour == prompt.objects[i].colour;
      v.shape_ok = t.shape == prompt.objects[i].shape;
      v.motion_ok = t.motion == prompt.objects[i].motion;
    }
    verdict.objects.push_back(v);
  }
  return verdict;
}

}  // namespace astraea::shapes
