// The shapes world: a tiny prompt grammar, seeded random layouts and a renderer of the clips that
// the "tiny" text-to-video model learns and is measured on. Plain C++, no LibTorch.
//
// Prompt grammar (case-insensitive, any whitespace):
//   a|an COLOUR SHAPE MOTION [and a|an COLOUR SHAPE MOTION] on a|an BACKGROUND background
// e.g. "a red circle moving left on a gray background".
//
// Coordinates are in pixels: pixel (x, y) covers [x, x + 1) x [y, y + 1), so its centre is
// (x + 0.5, y + 0.5). Videos are float RGB in [0, 1], laid out [frames, height, width, 3].
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace astraea::shapes {

enum class Shape { kCircle, kSquare, kTriangle };
enum class Colour { kRed, kGreen, kBlue, kYellow, kWhite, kOrange, kPurple, kCyan };
enum class Motion { kLeft, kRight, kUp, kDown, kStill };
/// Checkered (gray and dark-gray cells, min(H, W) / 8 pixels, at least 4) and striped (horizontal
/// dark bands on tan, period min(H, W) / 4, at least 8) are textured; the others are plain.
enum class Background { kBlack, kGray, kBrown, kNavy, kCheckered, kStriped };

/// Every value of each enum, in declaration order (for loops and tests).
inline constexpr std::array<Shape, 3> kShapes = {Shape::kCircle, Shape::kSquare, Shape::kTriangle};
inline constexpr std::array<Colour, 8> kColours = {Colour::kRed,    Colour::kGreen, Colour::kBlue,
                                                   Colour::kYellow, Colour::kWhite, Colour::kOrange,
                                                   Colour::kPurple, Colour::kCyan};
inline constexpr std::array<Motion, 5> kMotions = {Motion::kLeft, Motion::kRight, Motion::kUp, Motion::kDown,
                                                   Motion::kStill};
inline constexpr std::array<Background, 6> kBackgrounds = {Background::kBlack,     Background::kGray,
                                                           Background::kBrown,     Background::kNavy,
                                                           Background::kCheckered, Background::kStriped};

/// A prompt that does not follow the grammar; the message names the offending word and what was
/// expected there.
class PromptError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// One prompted object.
struct ObjectSpec {
  Shape shape = Shape::kCircle;
  Colour colour = Colour::kRed;
  Motion motion = Motion::kStill;
  bool operator==(const ObjectSpec& o) const {
    return shape == o.shape && colour == o.colour && motion == o.motion;
  }
};

/// The most objects one prompt names (the grammar: "... [and a COLOUR SHAPE MOTION] ...").
inline constexpr int kMaxObjects = 2;

/// A parsed prompt: one or two objects on a background.
struct Prompt {
  std::vector<ObjectSpec> objects;
  Background background = Background::kBlack;
  bool operator==(const Prompt& o) const { return objects == o.objects && background == o.background; }
};

/// Names as the grammar spells them ("moving left", "standing still").
std::string shape_name(Shape shape);
std::string colour_name(Colour colour);
std::string motion_name(Motion motion);
std::string background_name(Background background);

/// The renderer's RGB for an object colour.
std::array<float, 3> colour_rgb(Colour colour);
/// The two tones of a background's pattern (equal for plain backgrounds).
std::array<std::array<float, 3>, 2> background_tones(Background background);
/// A background's mean colour (the average of its two tones for textured ones).
std::array<float, 3> background_rgb(Background background);

/// The canonical text of PROMPT: lower case, single spaces, "an" before vowels.
std::string to_text(const Prompt& prompt);
/// Parses TEXT by the grammar above; throws PromptError naming the first bad word.
Prompt parse_prompt(const std::string& text);
/// A random prompt: one or two objects with probability 1/2 each, every word uniform.
Prompt random_prompt(std::mt19937_64& rng);
/// COUNT distinct random prompts (as text) from SEED's stream, none of them among EXCLUDE: fresh
/// prompts a search never saw, for held-out checks.
std::vector<std::string> fresh_prompts(int count, const std::vector<std::string>& exclude, uint64_t seed);
/// The prompt of a clip of PROMPT played backwards: left and right swap, up and down swap.
Prompt time_reversed(Prompt prompt);

/// Every word the grammar uses, sorted and unique.
const std::vector<std::string>& vocabulary();
/// Word ids of TEXT: the index into vocabulary() plus 1 (0 is left for padding). Lower-cases;
/// an unknown word throws PromptError listing the vocabulary. Checks words, not grammar.
std::vector<int64_t> tokenize(const std::string& text);

/// Where one object is: its centre at the first and last frame (pixels) and its size (pixels; the
/// diameter of a circle, the side of a square, base and height of the apex-up triangle). The
/// centre is that of the bounding box; motion between the two is linear in time.
struct ObjectTrack {
  ObjectSpec spec;
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  double size = 0;
};

/// A prompt laid out in a frame size; render_clip turns it into pixels.
struct Clip {
  Prompt prompt;
  std::vector<ObjectTrack> objects;  ///< in drawing order: the second is drawn over the first
  int frames = 0, height = 0, width = 0;
  uint64_t seed = 0;
};

/// Lays PROMPT out from SEED: sizes 22-30% of min(height, width), moving objects travel 30-50% of
/// the frame's width (left/right) or height (up/down), every path stays at least a pixel inside the
/// frame, and two objects keep a gap between their bounding boxes in every frame when the frame
/// allows one. Needs frames >= 1 and sides >= 16; throws std::invalid_argument otherwise.
Clip layout_clip(const Prompt& prompt, uint64_t seed, int frames, int height, int width);

/// The clip's pixels, [frames, height, width, 3], with anti-aliased object edges.
std::vector<float> render_clip(const Clip& clip);

/// The fraction of pixel (x, y) inside SHAPE of SIZE centred (bounding box) at (cx, cy): exact 0
/// or 1 away from the edge, 8x8 supersampled across it.
double shape_coverage(Shape shape, double cx, double cy, double size, int x, int y);

}  // namespace astraea::shapes
