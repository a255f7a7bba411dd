#include "core/shapes_world.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

namespace astraea::shapes {
namespace {

using Rgb = std::array<float, 3>;

constexpr char kGrammar[] =
    "a|an COLOUR SHAPE MOTION [and a|an COLOUR SHAPE MOTION] on a|an BACKGROUND background";
constexpr int kMaxObjects = 2;
constexpr double kMinSizeFrac = 0.22, kMaxSizeFrac = 0.30;      // of min(height, width)
constexpr double kMinTravelFrac = 0.30, kMaxTravelFrac = 0.50;  // of the side moved along
constexpr double kMarginPx = 1.0;                               // keeps objects off the frame's edge pixels
constexpr int kLayoutAttempts = 500;
constexpr int kSubsamples = 8;  // per axis, for edge pixels

// mt19937_64 is specified bit for bit, but <random>'s distributions are not: these keep layouts
// identical across standard libraries.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
double uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * uniform01(rng); }
template <size_t N, typename T>
T pick(std::mt19937_64& rng, const std::array<T, N>& values) {
  return values[std::min(N - 1, static_cast<size_t>(uniform01(rng) * N))];
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(lower(text));
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

template <typename T, size_t N>
std::string list_names(const std::array<T, N>& values, std::string (*name)(T)) {
  std::string out;
  for (size_t i = 0; i < N; ++i) out += (i ? ", " : "") + name(values[i]);
  return out;
}

std::string article(const std::string& word) {
  return std::string("aeiou").find(word[0]) == std::string::npos ? "a" : "an";
}

// Recursive-descent parse of the grammar over lower-cased words.
class Parser {
 public:
  Parser(std::string text, std::vector<std::string> words)
      : text_(std::move(text)), words_(std::move(words)) {}

  Prompt parse() {
    if (words_.empty()) fail("empty prompt");
    Prompt prompt;
    prompt.objects.push_back(object());
    while (peek() == "and") {
      if (static_cast<int>(prompt.objects.size()) == kMaxObjects)
        fail("a prompt has at most " + std::to_string(kMaxObjects) + " objects, but word " +
             std::to_string(pos_ + 1) + " 'and' starts another");
      ++pos_;
      prompt.objects.push_back(object());
    }
    expect_word("on", "'and' or 'on'");
    skip_article();
    prompt.background = name_of(kBackgrounds, background_name, "a background");
    expect_word("background", "'background'");
    if (pos_ < words_.size())
      fail("unexpected word '" + words_[pos_] + "' after 'background' (word " + std::to_string(pos_ + 1) +
           ")");
    return prompt;
  }

 private:
  std::string peek() const { return pos_ < words_.size() ? words_[pos_] : ""; }

  [[noreturn]] void fail(const std::string& why) const {
    throw PromptError(why + " in prompt '" + text_ + "'; grammar: " + kGrammar);
  }
  // Names the word found at the cursor (or the end) and what should have been there.
  [[noreturn]] void expected(const std::string& what) const {
    if (pos_ >= words_.size()) fail("prompt ends where " + what + " was expected");
    fail("expected " + what + " but found '" + words_[pos_] + "' (word " + std::to_string(pos_ + 1) + ")");
  }
  void expect_word(const std::string& word, const std::string& what) {
    if (peek() != word) expected(what);
    ++pos_;
  }
  void skip_article() {
    if (peek() != "a" && peek() != "an") expected("'a' or 'an'");
    ++pos_;
  }
  // Matches the (possibly multi-word) name of one of VALUES at the cursor.
  template <typename T, size_t N>
  T name_of(const std::array<T, N>& values, std::string (*name)(T), const std::string& what) {
    for (T v : values) {
      std::vector<std::string> want = split_words(name(v));
      if (pos_ + want.size() <= words_.size() &&
          std::equal(want.begin(), want.end(), words_.begin() + pos_)) {
        pos_ += want.size();
        return v;
      }
    }
    expected(what + " (" + list_names(values, name) + ")");
  }
  ObjectSpec object() {
    skip_article();
    ObjectSpec spec;
    spec.colour = name_of(kColours, colour_name, "a colour");
    spec.shape = name_of(kShapes, shape_name, "a shape");
    spec.motion = name_of(kMotions, motion_name, "a motion");
    return spec;
  }

  std::string text_;
  std::vector<std::string> words_;
  size_t pos_ = 0;
};

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

std::string shape_name(Shape shape) {
  switch (shape) {
    case Shape::kCircle:
      return "circle";
    case Shape::kSquare:
      return "square";
    case Shape::kTriangle:
      return "triangle";
  }
  return "?";
}

std::string colour_name(Colour colour) {
  switch (colour) {
    case Colour::kRed:
      return "red";
    case Colour::kGreen:
      return "green";
    case Colour::kBlue:
      return "blue";
    case Colour::kYellow:
      return "yellow";
    case Colour::kWhite:
      return "white";
    case Colour::kOrange:
      return "orange";
    case Colour::kPurple:
      return "purple";
    case Colour::kCyan:
      return "cyan";
  }
  return "?";
}

std::string motion_name(Motion motion) {
  switch (motion) {
    case Motion::kLeft:
      return "moving left";
    case Motion::kRight:
      return "moving right";
    case Motion::kUp:
      return "moving up";
    case Motion::kDown:
      return "moving down";
    case Motion::kStill:
      return "standing still";
  }
  return "?";
}

std::string background_name(Background background) {
  switch (background) {
    case Background::kBlack:
      return "black";
    case Background::kGray:
      return "gray";
    case Background::kBrown:
      return "brown";
    case Background::kNavy:
      return "navy";
    case Background::kCheckered:
      return "checkered";
    case Background::kStriped:
      return "striped";
  }
  return "?";
}

// Object colours sit at least ~0.4 apart (orange between red and yellow is the closest call), and
// at least ~0.45 from every background tone and from the line between a textured background's
// two tones, so both survive a generative model's blur and colour drift.
std::array<float, 3> colour_rgb(Colour colour) {
  switch (colour) {
    case Colour::kRed:
      return {0.90f, 0.08f, 0.10f};
    case Colour::kGreen:
      return {0.10f, 0.80f, 0.15f};
    case Colour::kBlue:
      return {0.15f, 0.30f, 1.00f};
    case Colour::kYellow:
      return {1.00f, 0.95f, 0.12f};
    case Colour::kWhite:
      return {1.00f, 1.00f, 1.00f};
    case Colour::kOrange:
      return {1.00f, 0.52f, 0.00f};
    case Colour::kPurple:
      return {0.62f, 0.15f, 0.90f};
    case Colour::kCyan:
      return {0.00f, 0.88f, 0.92f};
  }
  return {0, 0, 0};
}

// Navy is far darker than blue and gray (0.5) far from white; the textured tones are neutral or
// dull so that no object colour lies near the segment between them.
std::array<std::array<float, 3>, 2> background_tones(Background background) {
  switch (background) {
    case Background::kBlack:
      return {{{0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f}}};
    case Background::kGray:
      return {{{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}}};
    case Background::kBrown:
      return {{{0.45f, 0.28f, 0.12f}, {0.45f, 0.28f, 0.12f}}};
    case Background::kNavy:
      return {{{0.02f, 0.06f, 0.40f}, {0.02f, 0.06f, 0.40f}}};
    case Background::kCheckered:
      return {{{0.50f, 0.50f, 0.50f}, {0.22f, 0.22f, 0.22f}}};
    case Background::kStriped:
      return {{{0.60f, 0.50f, 0.35f}, {0.10f, 0.10f, 0.12f}}};
  }
  return {};
}

std::array<float, 3> background_rgb(Background background) {
  auto [a, b] = background_tones(background);
  return {(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2};
}

std::string to_text(const Prompt& prompt) {
  std::string text;
  for (const ObjectSpec& o : prompt.objects) {
    if (!text.empty()) text += " and ";
    text += article(colour_name(o.colour)) + " " + colour_name(o.colour) + " " + shape_name(o.shape) + " " +
            motion_name(o.motion);
  }
  std::string bg = background_name(prompt.background);
  return text + " on " + article(bg) + " " + bg + " background";
}

Prompt parse_prompt(const std::string& text) {
  tokenize(text);  // unknown words first: that message lists the whole vocabulary
  return Parser(text, split_words(text)).parse();
}

std::vector<std::string> fresh_prompts(int count, const std::vector<std::string>& exclude, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> out;
  while (static_cast<int>(out.size()) < count) {
    const auto p = to_text(random_prompt(rng));
    if (std::find(exclude.begin(), exclude.end(), p) == exclude.end()) out.push_back(p);
  }
  return out;
}

Prompt random_prompt(std::mt19937_64& rng) {
  Prompt prompt;
  int count = uniform01(rng) < 0.5 ? 1 : 2;
  for (int i = 0; i < count; ++i)
    prompt.objects.push_back({pick(rng, kShapes), pick(rng, kColours), pick(rng, kMotions)});
  prompt.background = pick(rng, kBackgrounds);
  return prompt;
}

Prompt time_reversed(Prompt prompt) {
  for (ObjectSpec& o : prompt.objects) {
    switch (o.motion) {
      case Motion::kLeft: o.motion = Motion::kRight; break;
      case Motion::kRight: o.motion = Motion::kLeft; break;
      case Motion::kUp: o.motion = Motion::kDown; break;
      case Motion::kDown: o.motion = Motion::kUp; break;
      case Motion::kStill: break;
    }
  }
  return prompt;
}

const std::vector<std::string>& vocabulary() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> all = {"a", "an", "and", "on", "background"};
    auto add = [&](const std::string& name) {
      for (const std::string& w : split_words(name)) all.push_back(w);
    };
    for (Shape s : kShapes) add(shape_name(s));
    for (Colour c : kColours) add(colour_name(c));
    for (Motion m : kMotions) add(motion_name(m));
    for (Background b : kBackgrounds) add(background_name(b));
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    return all;
  }();
  return words;
}

std::vector<int64_t> tokenize(const std::string& text) {
  const auto& vocab = vocabulary();
  std::vector<int64_t> ids;
  for (const std::string& w : split_words(text)) {
    auto it = std::lower_bound(vocab.begin(), vocab.end(), w);
    if (it == vocab.end() || *it != w) {
      std::string known;
      for (const std::string& v : vocab) known += (known.empty() ? "" : ", ") + v;
      throw PromptError("unknown word '" + w + "' in prompt '" + text + "'; known words: " + known);
    }
    ids.push_back(it - vocab.begin() + 1);
  }
  return ids;
}

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
