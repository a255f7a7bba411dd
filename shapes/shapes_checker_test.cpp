#include "shapes/shapes_checker.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

namespace astraea::shapes {
namespace {

using shapes::Prompt;

constexpr int kClips = 200;

struct Size {
  int frames, height, width;
};

struct Sample {
  Prompt prompt;
  std::vector<float> rgb;
};

std::vector<Sample> ground_truth(const Size& size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Sample> samples;
  for (int i = 0; i < kClips; ++i) {
    Prompt prompt = shapes::random_prompt(rng);
    auto clip = shapes::layout_clip(prompt, rng(), size.frames, size.height, size.width);
    samples.push_back({prompt, shapes::render_clip(clip)});
  }
  return samples;
}

// What a generative model does to a clip, roughly: a 3x3 box blur of each frame...
std::vector<float> blurred(const std::vector<float>& rgb, const Size& s) {
  std::vector<float> out(rgb.size());
  for (int f = 0; f < s.frames; ++f)
    for (int y = 0; y < s.height; ++y)
      for (int x = 0; x < s.width; ++x)
        for (int k = 0; k < 3; ++k) {
          float sum = 0;
          int n = 0;
          for (int yy = std::max(0, y - 1); yy <= std::min(s.height - 1, y + 1); ++yy)
            for (int xx = std::max(0, x - 1); xx <= std::min(s.width - 1, x + 1); ++xx, ++n)
              sum += rgb[((static_cast<size_t>(f) * s.height + yy) * s.width + xx) * 3 + k];
          out[((static_cast<size_t>(f) * s.height + y) * s.width + x) * 3 + k] = sum / n;
        }
  return out;
}

// ...or Gaussian noise per value, clamped to the valid range as a decoded video would be.
std::vector<float> noisy(std::vector<float> rgb, double sigma, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, static_cast<float>(sigma));
  for (float& v : rgb) v = std::clamp(v + noise(rng), 0.0f, 1.0f);
  return rgb;
}

// Checks clip i against prompt (i + shift) % n: shift 0 is the truth, others are shuffled.
Agreement agreement(const std::vector<Sample>& samples, const Size& s, size_t shift = 0) {
  Agreement a;
  int shown = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const Prompt& prompt = samples[(i + shift) % samples.size()].prompt;
    ClipVerdict v = check_clip(samples[i].rgb.data(), s.frames, s.height, s.width, prompt);
    a.add(v);
    // Misses on true prompts are listed (the callers assert the rates) to show what went wrong.
    for (size_t j = 0; j < v.objects.size() && shift == 0 && shown < 10; ++j) {
      const ObjectVerdict& o = v.objects[j];
      if (o.colour_ok && o.shape_ok && o.motion_ok && v.background_ok) continue;
      ++shown;
      std::printf("[ miss     ] clip %zu '%s' object %zu: found=%d %s %s %s on %s\n", i,
                  shapes::to_text(prompt).c_str(), j, o.found, shapes::colour_name(o.found_colour).c_str(),
                  shapes::shape_name(o.found_shape).c_str(), shapes::motion_name(o.found_motion).c_str(),
                  shapes::background_name(v.found_background).c_str());
    }
  }
  return a;
}

void print(const char* what, const Size& s, const Agreement& a) {
  std::printf(
      "[ rates    ] %-8s %2dx%2dx%2d: colour %.3f shape %.3f motion %.3f background %.3f (%d objects)\n",
      what, s.frames, s.height, s.width, a.colour, a.shape, a.motion, a.background, a.objects);
}

class CheckerTest : public ::testing::TestWithParam<Size> {};

TEST_P(CheckerTest, RecognisesGroundTruth) {
  const Size s = GetParam();
  Agreement a = agreement(ground_truth(s, 1), s);
  print("truth", s, a);
  EXPECT_EQ(a.clips, kClips);
  EXPECT_EQ(a.colour, 1.0);
  EXPECT_EQ(a.motion, 1.0);
  EXPECT_EQ(a.background, 1.0);
  EXPECT_GE(a.shape, 0.95);
}

// Chance, for a random prompt against an unrelated clip with 1 or 2 objects (probability 1/2
// each): colour 1/2 * 1/8 + 1/2 * (1 - (7/8)^2) = 0.18; background 1/6; motion at most ~1/5 and
// shape at most ~1/3 (a missing colour is judged on a leftover object, when there is one). The
// bounds add ~4 standard errors of ~300 objects (0.02-0.03) and nothing more.
TEST_P(CheckerTest, ShuffledPromptsAgreeNearChance) {
  const Size s = GetParam();
  auto samples = ground_truth(s, 2);
  Agreement a = agreement(samples, s, 1);
  print("shuffled", s, a);
  EXPECT_LT(a.colour, 0.27);
  EXPECT_LT(a.motion, 0.32);
  EXPECT_LT(a.shape, 0.47);
  EXPECT_LT(a.background, 0.26);
}

TEST_P(CheckerTest, SurvivesBlur) {
  const Size s = GetParam();
  auto samples = ground_truth(s, 3);
  for (Sample& sample : samples) sample.rgb = blurred(sample.rgb, s);
  Agreement a = agreement(samples, s);
  print("blurred", s, a);
  EXPECT_GE(a.colour, 0.95);
  EXPECT_GE(a.shape, 0.95);
  EXPECT_GE(a.motion, 0.95);
  EXPECT_GE(a.background, 0.95);
}

TEST_P(CheckerTest, SurvivesNoise) {
  const Size s = GetParam();
  auto samples = ground_truth(s, 4);
  for (size_t i = 0; i < samples.size(); ++i) samples[i].rgb = noisy(samples[i].rgb, 0.05, i);
  Agreement a = agreement(samples, s);
  print("noisy", s, a);
  EXPECT_GE(a.colour, 0.95);
  EXPECT_GE(a.shape, 0.95);
  EXPECT_GE(a.motion, 0.95);
  EXPECT_GE(a.background, 0.95);
}

INSTANTIATE_TEST_SUITE_P(CpuAndEvalSizes, CheckerTest, ::testing::Values(Size{8, 32, 48}, Size{16, 64, 64}),
                         [](const auto& info) {
                           return std::to_string(info.param.frames) + "x" +
                                  std::to_string(info.param.height) + "x" + std::to_string(info.param.width);
                         });

TEST(CheckClip, RejectsInvalidInput) {
  Prompt prompt = shapes::parse_prompt("a red circle standing still on a black background");
  auto clip = shapes::render_clip(shapes::layout_clip(prompt, 7, 4, 32, 32));
  EXPECT_THROW(check_clip(nullptr, 4, 32, 32, prompt), std::invalid_argument);
  EXPECT_THROW(check_clip(clip.data(), 0, 32, 32, prompt), std::invalid_argument);
  EXPECT_THROW(check_clip(clip.data(), 4, 4, 32, prompt), std::invalid_argument);
  EXPECT_THROW(check_clip(clip.data(), 4, 32, -1, prompt), std::invalid_argument);
  EXPECT_THROW(check_clip(clip.data(), 4, 32, 32, Prompt{}), std::invalid_argument);
  clip[2 * 32 * 32 * 3 + 100] = std::numeric_limits<float>::quiet_NaN();
  try {
    check_clip(clip.data(), 4, 32, 32, prompt);
    FAIL() << "a NaN was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("frame 2"), std::string::npos) << e.what();
  }
}

// A clip played backwards is a clip of the time-reversed prompt, and not of the original one.
TEST(CheckClip, AClipPlayedBackwardsMatchesTheTimeReversedPrompt) {
  std::mt19937_64 rng(21);
  int objects = 0, reversed_ok = 0, moving = 0, moving_ok_as_prompted = 0;
  for (int i = 0; i < 40; ++i) {
    const Prompt p = shapes::random_prompt(rng);
    const auto rgb = shapes::render_clip(shapes::layout_clip(p, rng(), 16, 64, 64));
    std::vector<float> backwards(rgb.size());
    const size_t frame = rgb.size() / 16;
    for (size_t f = 0; f < 16; ++f)
      std::copy_n(rgb.begin() + (15 - f) * frame, frame, backwards.begin() + f * frame);
    const auto r = check_clip(backwards.data(), 16, 64, 64, shapes::time_reversed(p));
    const auto o = check_clip(backwards.data(), 16, 64, 64, p);
    for (size_t k = 0; k < p.objects.size(); ++k) {
      ++objects;
      reversed_ok += r.objects[k].motion_ok;
      if (p.objects[k].motion != shapes::Motion::kStill)
        ++moving, moving_ok_as_prompted += o.objects[k].motion_ok;
    }
  }
  ASSERT_GT(moving, 20);
  EXPECT_EQ(reversed_ok, objects);
  EXPECT_EQ(moving_ok_as_prompted, 0)
      << "a moving object played backwards still matched its prompted direction";
}

// A clip rendered with one object's motion swapped: the checker must see the swap, and the
// confusion must file it under the prompted motion, the found one, and the clip's object count.
TEST(MotionConfusion, FilesEachObjectUnderItsPromptedAndFoundMotion) {
  const Prompt asked =
      shapes::parse_prompt("a red circle moving left and a blue square standing still on a black background");
  Prompt drawn = asked;
  drawn.objects[0].motion = shapes::Motion::kUp;
  auto rgb = shapes::render_clip(shapes::layout_clip(drawn, 3, 16, 64, 64));
  const auto two = check_clip(rgb.data(), 16, 64, 64, asked);

  const Prompt alone = shapes::parse_prompt("a green triangle moving right on a gray background");
  rgb = shapes::render_clip(shapes::layout_clip(alone, 4, 16, 64, 64));
  const auto one = check_clip(rgb.data(), 16, 64, 64, alone);

  MotionConfusion c;
  c.add(asked, two);
  c.add(alone, one);
  const int left = static_cast<int>(shapes::Motion::kLeft), up = static_cast<int>(shapes::Motion::kUp);
  const int still = static_cast<int>(shapes::Motion::kStill),
            right = static_cast<int>(shapes::Motion::kRight);
  EXPECT_EQ(c.found[left][up], 1);
  EXPECT_EQ(c.found[still][still], 1);
  EXPECT_EQ(c.found[right][right], 1);
  int64_t total = 0;
  for (const auto& row : c.found) {
    for (int64_t n : row) total += n;
  }
  EXPECT_EQ(total, 3);
  EXPECT_EQ(c.objects[1], 1);
  EXPECT_EQ(c.right[1], 1);
  EXPECT_EQ(c.objects[2], 2);
  EXPECT_EQ(c.right[2], 1);
  EXPECT_DOUBLE_EQ(c.right_share(1), 1.0);
  EXPECT_DOUBLE_EQ(c.right_share(2), 0.5);

  ClipVerdict lost = one;  // a verdict that judged no track for the object
  lost.objects[0].found = false;
  lost.objects[0].motion_ok = false;
  c.add(alone, lost);
  EXPECT_EQ(c.found[right][MotionConfusion::kNotFound], 1);
  EXPECT_EQ(c.objects[1], 2);
  EXPECT_EQ(c.right[1], 1);
}

}  // namespace
}  // namespace astraea::shapes
