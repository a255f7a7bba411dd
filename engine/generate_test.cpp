// End to end on the CPU: the tiny preset generates deterministically by seed.
#include "engine/generate.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "model/wan/dit.h"
#include "model/weights.h"

namespace astraea {
namespace {

GenerateOptions small_tiny(uint64_t seed) {
  GenerateOptions o;
  o.model = "tiny";
  o.weights = "random";
  o.prompt = "a red circle moving left on a gray background";
  o.frames = 2;
  o.height = 16;
  o.width = 16;
  o.steps = 3;
  o.seed = seed;
  return o;
}

TEST(Generate, TinyIsDeterministicBySeed) {
  auto a = generate(small_tiny(1)), b = generate(small_tiny(1)), c = generate(small_tiny(2));
  ASSERT_EQ(a.video.sizes(), (std::vector<int64_t>{2, 16, 16, 3}));
  EXPECT_TRUE(at::equal(a.video, b.video));
  EXPECT_GT((a.video - c.video).abs().max().item<float>(), 1e-3);
  EXPECT_GE(a.video.min().item<float>(), 0.f);
  EXPECT_LE(a.video.max().item<float>(), 1.f);
  EXPECT_GT(a.video.std().item<float>(), 1e-3);  // not a constant image
  EXPECT_EQ(a.model_calls, 6);                   // guided: two calls a step
}

// Tiny weights files with and without position features both load and generate: the file decides.
TEST(Generate, WeightsFilesWithAndWithoutPositionFeaturesLoad) {
  const auto path = (std::filesystem::temp_directory_path() / "astraea_generate_pos.safetensors").string();
  for (int64_t octaves : {0, 4}) {
    auto config = model_preset("tiny");
    config.position_octaves = octaves;
    save_weights(path, random_weights(config, 2, at::kCPU, at::kFloat));
    auto o = small_tiny(1);
    o.weights = path;
    EXPECT_EQ(load_model(o)->config().position_octaves, octaves);
    const auto r = generate(o);
    EXPECT_EQ(r.video.sizes(), (std::vector<int64_t>{2, 16, 16, 3})) << octaves;
  }
  std::filesystem::remove(path);
}

TEST(Generate, UnguidedMakesOneCallPerStep) {
  auto o = small_tiny(1);
  o.guidance = 1.0;
  EXPECT_EQ(generate(o).model_calls, 3);
}

TEST(Generate, PromptChangesTheVideo) {
  auto o = small_tiny(1);
  auto a = generate(o);
  o.prompt = "a blue square moving up on a black background";
  EXPECT_GT((a.video - generate(o).video).abs().max().item<float>(), 1e-4);
}

TEST(Generate, BadInputsNameTheFlag) {
  auto o = small_tiny(1);
  o.height = 18;
  EXPECT_THROW(generate(o), std::invalid_argument);
  o = small_tiny(1);
  o.model = "nope";
  try {
    generate(o);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown model preset 'nope'"), std::string::npos);
  }
  o = small_tiny(1);
  o.device = "gpu";
  EXPECT_THROW(generate(o), std::invalid_argument);
  o = small_tiny(1);
  o.weights = "/nonexistent/w.safetensors";
  EXPECT_THROW(generate(o), std::runtime_error);
}

}  // namespace
}  // namespace astraea
