#include "shapes/shapes_world.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "model/model_config.h"

namespace astraea::shapes {
namespace {

struct Size {
  int frames, height, width;
};
constexpr Size kCpuSize{8, 32, 48}, kEvalSize{16, 64, 64};

std::string error_of(const std::string& text) {
  try {
    parse_prompt(text);
  } catch (const PromptError& e) {
    return e.what();
  }
  return "(no error)";
}

double distance(const std::array<float, 3>& a, const std::array<float, 3>& b) {
  return std::sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
                   (a[2] - b[2]) * (a[2] - b[2]));
}

std::array<float, 3> pixel(const std::vector<float>& rgb, const Clip& clip, int f, int y, int x) {
  const float* p = &rgb[((static_cast<size_t>(f) * clip.height + y) * clip.width + x) * 3];
  return {p[0], p[1], p[2]};
}

TEST(Grammar, EveryOneObjectPromptRoundTrips) {
  int count = 0;
  for (Shape s : kShapes)
    for (Colour c : kColours)
      for (Motion m : kMotions)
        for (Background b : kBackgrounds) {
          Prompt prompt{{{s, c, m}}, b};
          std::string text = to_text(prompt);
          EXPECT_EQ(parse_prompt(text), prompt) << text;
          EXPECT_EQ(to_text(parse_prompt(text)), text);
          ++count;
        }
  EXPECT_EQ(count, 3 * 8 * 5 * 6);
}

TEST(Grammar, TwoObjectPromptsRoundTrip) {
  std::mt19937_64 rng(5);
  int two = 0;
  for (int i = 0; i < 2000; ++i) {
    Prompt prompt = random_prompt(rng);
    ASSERT_TRUE(prompt.objects.size() == 1 || prompt.objects.size() == 2);
    two += prompt.objects.size() == 2;
    EXPECT_EQ(parse_prompt(to_text(prompt)), prompt) << to_text(prompt);
  }
  EXPECT_NEAR(two / 2000.0, 0.5, 0.05);
}

TEST(Grammar, CanonicalTextUsesAnBeforeVowels) {
  EXPECT_EQ(to_text({{{Shape::kTriangle, Colour::kOrange, Motion::kRight}}, Background::kNavy}),
            "an orange triangle moving right on a navy background");
  EXPECT_EQ(to_text({{{Shape::kCircle, Colour::kRed, Motion::kLeft},
                      {Shape::kSquare, Colour::kBlue, Motion::kStill}},
                     Background::kGray}),
            "a red circle moving left and a blue square standing still on a gray background");
}

TEST(Grammar, ParsesMessySpacingAndCase) {
  Prompt p = parse_prompt(
      "  An ORANGE\ttriangle   Moving Right\n and a Blue SQUARE standing still on A checkered Background ");
  EXPECT_EQ(p, (Prompt{{{Shape::kTriangle, Colour::kOrange, Motion::kRight},
                        {Shape::kSquare, Colour::kBlue, Motion::kStill}},
                       Background::kCheckered}));
}

TEST(Grammar, RejectsBadPromptsNamingTheProblem) {
  std::string unknown = error_of("a pink circle moving left on a gray background");
  EXPECT_NE(unknown.find("'pink'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("known words: a, an, and,"), std::string::npos) << unknown;

  std::string missing = error_of("a red circle moving left on a gray");
  EXPECT_NE(missing.find("'background'"), std::string::npos) << missing;

  std::string three = error_of(
      "a red circle moving left and a blue square moving up and a cyan circle standing still "
      "on a black background");
  EXPECT_NE(three.find("at most 2 objects"), std::string::npos) << three;

  EXPECT_NE(error_of("").find("empty prompt"), std::string::npos);
  EXPECT_NE(error_of("   ").find("empty prompt"), std::string::npos);

  std::string order = error_of("a circle red moving left on a gray background");
  EXPECT_NE(order.find("expected a colour"), std::string::npos) << order;
  EXPECT_NE(order.find("'circle'"), std::string::npos) << order;

  std::string motion = error_of("a red circle moving on a gray background");
  EXPECT_NE(motion.find("expected a motion"), std::string::npos) << motion;

  std::string trailing = error_of("a red circle moving left on a gray background background");
  EXPECT_NE(trailing.find("unexpected word"), std::string::npos) << trailing;
}

TEST(Vocabulary, IsTheTinyModelsOwn) {
  // The tiny preset's text encoder embeds exactly these words (model/model_config.cpp): the grammar
  // must not use a word the shipped weights have no embedding row for, nor shift the ids.
  EXPECT_EQ(vocabulary(), model_preset("tiny").vocabulary);
  EXPECT_EQ(model_preset("tiny").text_vocab, static_cast<int64_t>(vocabulary().size()) + 1);
}

TEST(Tokenizer, MapsWordsToVocabularyIdsAndRejectsUnknownWords) {
  const auto& vocab = vocabulary();
  EXPECT_TRUE(std::is_sorted(vocab.begin(), vocab.end()));
  EXPECT_EQ(std::set<std::string>(vocab.begin(), vocab.end()).size(), vocab.size());
  for (const char* w :
       {"a", "an", "and", "on", "background", "moving", "standing", "still", "navy", "striped"})
    EXPECT_TRUE(std::binary_search(vocab.begin(), vocab.end(), w)) << w;

  auto ids = tokenize("A Red  circle");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(vocab[ids[0] - 1], "a");
  EXPECT_EQ(vocab[ids[1] - 1], "red");
  EXPECT_EQ(vocab[ids[2] - 1], "circle");
  for (int64_t id : tokenize(to_text({{{Shape::kSquare, Colour::kCyan, Motion::kUp}}, Background::kStriped})))
    EXPECT_GE(id, 1);

  try {
    tokenize("a red hexagon");
    FAIL() << "accepted 'hexagon'";
  } catch (const PromptError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("unknown word 'hexagon'"), std::string::npos) << what;
    EXPECT_NE(what.find("yellow"), std::string::npos) << what;
  }
}

// Blur and colour drift must not turn one colour into another, or an object into background.
TEST(Palette, ObjectColoursStayFarFromEachOtherAndFromBackgrounds) {
  for (Colour a : kColours)
    for (Colour b : kColours) {
      if (a == b) continue;
      EXPECT_GT(distance(colour_rgb(a), colour_rgb(b)), 0.4) << colour_name(a) << " " << colour_name(b);
    }
  for (Colour c : kColours)
    for (Background b : kBackgrounds)
      for (int k = 0; k <= 10; ++k) {  // along the line between the two tones
        auto [ta, tb] = background_tones(b);
        std::array<float, 3> mix;
        for (int i = 0; i < 3; ++i) mix[i] = ta[i] + (tb[i] - ta[i]) * k / 10.0f;
        EXPECT_GT(distance(colour_rgb(c), mix), 0.45) << colour_name(c) << " on " << background_name(b);
      }
  EXPECT_GT(distance(background_rgb(Background::kNavy), colour_rgb(Colour::kBlue)), 0.6);
}

TEST(Layout, PathsStayInsideAndObjectsKeepApart) {
  std::mt19937_64 rng(9);
  for (Size s : {kCpuSize, kEvalSize, Size{2, 16, 16}, Size{5, 16, 40}, Size{3, 40, 17}}) {
    int apart = 0, pairs = 0;
    for (int i = 0; i < 300; ++i) {
      Prompt prompt = random_prompt(rng);
      Clip clip = layout_clip(prompt, rng(), s.frames, s.height, s.width);
      ASSERT_EQ(clip.objects.size(), prompt.objects.size());
      int side = std::min(s.height, s.width);
      for (const ObjectTrack& o : clip.objects) {
        EXPECT_GE(o.size, 0.22 * side);
        EXPECT_LE(o.size, 0.30 * side);
        for (double x : {o.x0, o.x1}) EXPECT_TRUE(x - o.size / 2 >= 1 && x + o.size / 2 <= s.width - 1);
        for (double y : {o.y0, o.y1}) EXPECT_TRUE(y - o.size / 2 >= 1 && y + o.size / 2 <= s.height - 1);
        double dx = (o.x1 - o.x0) / s.width, dy = (o.y1 - o.y0) / s.height;
        switch (o.spec.motion) {
          case Motion::kLeft:
            EXPECT_TRUE(dx <= -0.3 && dx >= -0.5 && dy == 0);
            break;
          case Motion::kRight:
            EXPECT_TRUE(dx >= 0.3 && dx <= 0.5 && dy == 0);
            break;
          case Motion::kUp:
            EXPECT_TRUE(dy <= -0.3 && dy >= -0.5 && dx == 0);
            break;
          case Motion::kDown:
            EXPECT_TRUE(dy >= 0.3 && dy <= 0.5 && dx == 0);
            break;
          case Motion::kStill:
            EXPECT_TRUE(dx == 0 && dy == 0);
            break;
        }
      }
      if (clip.objects.size() < 2) continue;
      // Bounding boxes apart (by at least a pixel) in every frame.
      bool ok = true;
      const ObjectTrack &a = clip.objects[0], &b = clip.objects[1];
      for (int f = 0; f < s.frames; ++f) {
        double t = s.frames > 1 ? f / (s.frames - 1.0) : 0;
        double gx = std::abs(a.x0 + (a.x1 - a.x0) * t - b.x0 - (b.x1 - b.x0) * t) - (a.size + b.size) / 2;
        double gy = std::abs(a.y0 + (a.y1 - a.y0) * t - b.y0 - (b.y1 - b.y0) * t) - (a.size + b.size) / 2;
        ok = ok && std::max(gx, gy) >= 1;
      }
      apart += ok, ++pairs;
    }
    EXPECT_GE(apart, pairs * 0.98) << s.frames << "x" << s.height << "x" << s.width;
  }
}

TEST(Layout, RejectsFramesTooSmall) {
  Prompt p = parse_prompt("a red circle moving left on a gray background");
  EXPECT_THROW(layout_clip(p, 1, 0, 32, 32), std::invalid_argument);
  EXPECT_THROW(layout_clip(p, 1, 4, 15, 32), std::invalid_argument);
  EXPECT_THROW(layout_clip(p, 1, 4, 32, 8), std::invalid_argument);
  EXPECT_THROW(layout_clip(Prompt{}, 1, 4, 32, 32), std::invalid_argument);
}

TEST(Render, IsDeterministicInTheSeed) {
  Prompt p =
      parse_prompt("a blue square moving up and a yellow triangle standing still on a striped background");
  auto a = render_clip(layout_clip(p, 42, 8, 32, 48)), b = render_clip(layout_clip(p, 42, 8, 32, 48));
  auto c = render_clip(layout_clip(p, 43, 8, 32, 48));
  ASSERT_EQ(a.size(), 8u * 32 * 48 * 3);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)), 0);
  for (float v : a) ASSERT_TRUE(v >= 0 && v <= 1);
}

TEST(Render, ObjectCentresHaveTheirColourAndCornersTheBackground) {
  std::mt19937_64 rng(3);
  for (Size s : {kCpuSize, kEvalSize})
    for (int i = 0; i < 100; ++i) {
      Clip clip = layout_clip(random_prompt(rng), rng(), s.frames, s.height, s.width);
      auto rgb = render_clip(clip);
      auto tones = background_tones(clip.prompt.background);
      for (int f : {0, s.frames / 2, s.frames - 1}) {
        double t = f / (s.frames - 1.0);
        for (const ObjectTrack& o : clip.objects) {
          int x = static_cast<int>(o.x0 + (o.x1 - o.x0) * t), y = static_cast<int>(o.y0 + (o.y1 - o.y0) * t);
          EXPECT_EQ(pixel(rgb, clip, f, y, x), colour_rgb(o.spec.colour)) << to_text(clip.prompt);
        }
        for (auto [y, x] :
             {std::pair{0, 0}, {0, s.width - 1}, {s.height - 1, 0}, {s.height - 1, s.width - 1}}) {
          auto p = pixel(rgb, clip, f, y, x);
          EXPECT_TRUE(p == tones[0] || p == tones[1]) << to_text(clip.prompt) << " corner " << x << "," << y;
        }
      }
    }
}

TEST(Render, EdgesAreAntiAliased) {
  Clip clip = layout_clip(parse_prompt("a white circle standing still on a black background"), 1, 2, 64, 64);
  auto rgb = render_clip(clip);
  int partial = 0;
  for (size_t i = 0; i < rgb.size() / 2; i += 3) partial += rgb[i] > 0.01f && rgb[i] < 0.99f;
  EXPECT_GT(partial, 20);  // a ~17 px circle has ~50 edge pixels
}

TEST(Render, MovingLeftObjectCentreDecreasesInX) {
  Prompt p = parse_prompt("a green triangle moving left on a brown background");
  Clip clip = layout_clip(p, 17, kEvalSize.frames, kEvalSize.height, kEvalSize.width);
  auto rgb = render_clip(clip);
  auto green = colour_rgb(Colour::kGreen), brown = background_rgb(Background::kBrown);
  double previous = INFINITY;
  for (int f = 0; f < clip.frames; ++f) {
    double mass = 0, cx = 0;  // centroid weighted by how green each pixel is
    for (int y = 0; y < clip.height; ++y)
      for (int x = 0; x < clip.width; ++x) {
        double w = 1 - distance(pixel(rgb, clip, f, y, x), green) / distance(brown, green);
        mass += w, cx += w * (x + 0.5);
      }
    cx /= mass;
    EXPECT_LT(cx, previous) << "frame " << f;
    previous = cx;
  }
  double travel = (clip.objects[0].x0 - clip.objects[0].x1) / clip.width;
  EXPECT_TRUE(travel >= 0.3 && travel <= 0.5) << travel;
}

TEST(Grammar, TimeReversalSwapsDirectionsAndUndoesItself) {
  const Prompt p = parse_prompt("a red circle moving left and a blue square moving up on a gray background");
  EXPECT_EQ(to_text(time_reversed(p)),
            "a red circle moving right and a blue square moving down on a gray background");
  EXPECT_EQ(to_text(time_reversed(parse_prompt(
                "a cyan triangle moving down and an orange circle moving right on a navy background"))),
            "a cyan triangle moving up and an orange circle moving left on a navy background");
  const Prompt still = parse_prompt("a white square standing still on a black background");
  EXPECT_EQ(time_reversed(still), still);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200; ++i) {
    const Prompt q = random_prompt(rng);
    EXPECT_EQ(time_reversed(time_reversed(q)), q) << to_text(q);
  }
}

TEST(RandomPrompt, UsesEveryWord) {
  std::mt19937_64 rng(1);
  std::set<int64_t> seen;
  for (int i = 0; i < 500; ++i)
    for (int64_t id : tokenize(to_text(random_prompt(rng)))) seen.insert(id);
  EXPECT_EQ(seen.size(), vocabulary().size());
}

}  // namespace
}  // namespace astraea::shapes
