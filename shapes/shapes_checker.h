// Scores whether a video shows what its shapes-world prompt asked for: per object its colour, shape
// and motion, and the background. Positions are not known (a generated video puts objects where
// the model chose), so the checker finds them: it estimates the background from the frame border,
// labels the pixels that differ from it with the nearest object colour, and follows the colour
// blobs over time. Built to survive a generative model's blur, colour drift and noise.
#pragma once

#include <vector>

#include "shapes/shapes_world.h"

namespace astraea::shapes {

/// What the checker saw for one prompted object. The judged blob track is the one of the prompted
/// colour or, when there is none, the largest one no other object claimed (so shape and motion are
/// still scored when only the colour is wrong). found_* are meaningful only when found.
struct ObjectVerdict {
  bool colour_ok = false, shape_ok = false, motion_ok = false;
  shapes::Colour found_colour = shapes::Colour::kRed;
  shapes::Shape found_shape = shapes::Shape::kCircle;
  shapes::Motion found_motion = shapes::Motion::kStill;
  bool found = false;  ///< some blob track was judged for this object
};

/// The verdict on a whole clip; objects are in the prompt's order.
struct ClipVerdict {
  std::vector<ObjectVerdict> objects;
  bool background_ok = false;
  shapes::Background found_background = shapes::Background::kBlack;
};

/// Checks RGB ([frames, height, width, 3], values in [0, 1]) against PROMPT. Throws
/// std::invalid_argument for a null or empty video, sides under 8 pixels, a non-finite value or a
/// prompt without objects.
ClipVerdict check_clip(const float* rgb, int frames, int height, int width, const shapes::Prompt& prompt);

/// Agreement rates in [0, 1]: colour, shape and motion over objects, background over clips.
struct Agreement {
  int clips = 0, objects = 0;
  double colour = 0, shape = 0, motion = 0, background = 0;
  /// Folds one clip's verdict into the running rates.
  void add(const ClipVerdict& verdict);
};

/// Where motion fails: the motion found for each prompted one, and agreement by objects per clip
/// (objects standing still, moving along the wrong axis, or losing their direction only when a
/// second object shares the prompt).
struct MotionConfusion {
  static constexpr int kMotions = 5;  ///< shapes::Motion's values
  static constexpr int kNotFound = kMotions;
  int64_t found[kMotions][kMotions + 1] = {};  ///< [prompted][found, or kNotFound]
  int64_t right[3] = {}, objects[3] = {};      ///< motion right / objects, in clips of [1] or [2] objects
  /// Folds one clip's verdict on `prompt` in; objects are matched in the prompt's order.
  void add(const shapes::Prompt& prompt, const ClipVerdict& verdict);
  /// Motion agreement in clips of `count` (1 or 2) objects; 0 when there were none.
  double right_share(int count) const {
    return objects[count] ? double(right[count]) / double(objects[count]) : 0.0;
  }
};

}  // namespace astraea::shapes
