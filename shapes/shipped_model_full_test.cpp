// The shipped tiny model over many fresh prompts at its CPU size (label "full": a few minutes on
// two cores). The one-prompt smoke test could pass by luck; this one could not.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "shapes/prompt_adherence.h"

namespace astraea::shapes {
namespace {

TEST(ShippedTinyFull, FreshPromptsAtTheCpuSizeGetTheirColourMotionAndBackground) {
  const char* src = std::getenv("ASTRAEA_SOURCE_DIR");
  AdherenceOptions a;
  a.weights = (std::filesystem::path(src ? src : ".") / "assets" / "tiny.safetensors").string();
  ASSERT_TRUE(std::filesystem::exists(a.weights)) << a.weights;
  a.prompts = 16;
  a.seed = 3000;  // away from the seed of training (1) and from the CPU check in docs/shapes.md (1000)
  a.frames = 8, a.height = 32, a.width = 48;
  const auto agreement = prompt_adherence(a);
  EXPECT_EQ(agreement.clips, 16);
  // Measured with the shipped weights, 2026-11-28: see docs/shapes.md. The bounds leave room for
  // CPU/GPU differences, not for a model that ignores its prompts (chance is 0.18 for colour).
  EXPECT_GE(agreement.colour, 0.85);
  EXPECT_GE(agreement.background, 0.9);
  EXPECT_GE(agreement.shape, 0.5);
  // 0.955 measured on these prompts; chance is about 0.2, and the weights shipped before scored
  // 0.473 on 48 prompts of seed 1000 at this size.
  EXPECT_GE(agreement.motion, 0.7);
  std::printf("colour %.3f, motion %.3f, shape %.3f, background %.3f\n", agreement.colour, agreement.motion,
              agreement.shape, agreement.background);
}

}  // namespace
}  // namespace astraea::shapes
