// The shapes world's semantic check inside VBench-proxy: a ground-truth clip agrees with its prompt
// on every dimension, and a wrong prompt loses the ones it gets wrong.
#include "shapes/semantic_check.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace astraea::shapes {
namespace {

TEST(VBenchProxy, GroundTruthClipsAgreeWithTheirPrompt) {
  if (!quality::has_optical_flow()) GTEST_SKIP() << "built without OpenCV";
  const auto prompt = parse_prompt("a red circle moving right on a gray background");
  const auto clip = layout_clip(prompt, 11, 16, 64, 64);
  auto rgb = render_clip(clip);
  const auto video = at::from_blob(rgb.data(), {16, 64, 64, 3}).clone();
  const auto r = quality::vbench_proxy(video, 16.0, semantic_check(prompt).get());
  ASSERT_TRUE(r.semantic_score.has_value());
  for (const char* k : {"colour", "shape", "motion", "background"})
    EXPECT_DOUBLE_EQ(r.semantic.at(k), 1.0) << k;
  EXPECT_NEAR(r.total, (4 * r.quality_score + 1.0) / 5, 1e-12);
  // The wrong prompt loses the colour and the motion.
  const auto wrong = parse_prompt("a blue circle moving left on a gray background");
  const auto w = quality::vbench_proxy(video, 16.0, semantic_check(wrong).get());
  EXPECT_EQ(w.semantic.at("colour"), 0.0);
  EXPECT_EQ(w.semantic.at("motion"), 0.0);
  EXPECT_LT(w.total, r.total);
}

}  // namespace
}  // namespace astraea::shapes
