// End to end on the CPU: the tiny preset generates deterministically by seed.
#include "engine/generate.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "astraea/config.h"
#include "io/safetensors.h"
#include "model/denoiser.h"
#include "model/wan/dit.h"
#include "model/wan/wan_fixture.h"
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

// One whole small generation as Wan 2.1's WanT2V.generate runs it (scripts/wan_fixtures.py): a
// release folder of the fixtures' umT5, tokenizer, DiT (dim 24, 2 blocks) and VAE; the prompt and
// Wan's negative prompt; 4 UniPC steps with guidance; the latents decoded to 5 frames of 32x32.
TEST(Generate, AWholeSmallGenerationMatchesWans) {
  if (!ASTRAEA_HAS_SENTENCEPIECE) GTEST_SKIP() << "this build has no SentencePiece";
  namespace fs = std::filesystem;
  const std::string& fixtures = kWanFixtures;
  const auto dir = fs::temp_directory_path() / ("astraea_generation_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "google/umt5-xxl");
  fs::copy_file(fixtures + "/generation_dit.safetensors", dir / "diffusion_pytorch_model.safetensors");
  fs::copy_file(fixtures + "/umt5.pth", dir / "models_t5_umt5-xxl-enc-bf16.pth");
  fs::copy_file(fixtures + "/spiece.model", dir / "google/umt5-xxl/spiece.model");
  GenerateOptions o;
  o.model = "wan2.1-1.3b";
  o.weights = dir.string();
  ModelConfig c = model_preset(o.model);  // the fixture's DiT: the 1.3B preset, shrunk
  c.dim = 24, c.ffn_dim = 40, c.heads = 2, c.layers = 2, c.text_dim = 32, c.freq_dim = 16;
  o.loaded = make_denoiser(c, load_weights(o.weights, c, at::kCPU, at::kFloat), at::kFloat);
  o.prompt = "a cat walks on the grass at sunset";
  o.frames = 5, o.height = 32, o.width = 32, o.steps = 4, o.shift = 5, o.guidance = 5, o.seed = 7;
  o.sampler = "unipc";
  try {
    generate(o);
    ADD_FAILURE() << "decoded without the release's VAE";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("Wan2.1_VAE.pth: missing from the Wan 2.1 release folder"),
              std::string::npos)
        << e.what();
  }
  fs::copy_file(fixtures + "/vae.pth", dir / "Wan2.1_VAE.pth");
  const auto r = generate(o);
  fs::remove_all(dir);

  const auto f = SafetensorsFile::open(fixtures + "/generation.safetensors");
  auto want = [&](const std::string& name) { return wan_fixture(f, name); };
  EXPECT_EQ(r.sampler, "unipc");
  EXPECT_EQ(r.model_calls, 8);
  const auto latents = want("latents");
  ASSERT_EQ(r.latents.sizes(), latents.sizes());
  const float scale = latents.abs().max().item<float>();
  EXPECT_LT((r.latents - latents).abs().max().item<float>(), 1e-4 * scale);  // seen: 1.1e-5
  // The video as Wan decodes it, [3, F, H, W] in [-1, 1]; ours [F, H, W, 3] in [0, 1].
  const auto video = want("video").add(1).mul(0.5).permute({1, 2, 3, 0});
  ASSERT_EQ(r.video.sizes(), video.sizes());
  EXPECT_LT((r.video - video).abs().max().item<float>(), 1e-5);  // seen: 1.1e-6
  EXPECT_GT(video.std().item<float>(), 0.01) << "a flat fixture would prove little";
  EXPECT_NE(r.vae_source.find("Wan2.1_VAE.pth"), std::string::npos) << r.vae_source;
}

}  // namespace
}  // namespace astraea
