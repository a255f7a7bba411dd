#include "shapes/shapes_world.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "model/word_tokenizer.h"
#include "shapes/seeded_random.h"

namespace astraea::shapes {
namespace {

constexpr char kGrammar[] =
    "a|an COLOUR SHAPE MOTION [and a|an COLOUR SHAPE MOTION] on a|an BACKGROUND background";

template <size_t N, typename T>
T pick(std::mt19937_64& rng, const std::array<T, N>& values) {
  return values[std::min(N - 1, static_cast<size_t>(uniform01(rng) * N))];
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
      case Motion::kLeft:
        o.motion = Motion::kRight;
        break;
      case Motion::kRight:
        o.motion = Motion::kLeft;
        break;
      case Motion::kUp:
        o.motion = Motion::kDown;
        break;
      case Motion::kDown:
        o.motion = Motion::kUp;
        break;
      case Motion::kStill:
        break;
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
  try {
    return word_ids(vocabulary(), text);
  } catch (const std::invalid_argument& e) {
    throw PromptError(e.what());  // names the unknown word and lists the vocabulary
  }
}

}  // namespace astraea::shapes
