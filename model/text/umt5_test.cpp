#include "model/text/umt5.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "astraea/config.h"
#include "io/field_error.h"
#include "io/safetensors.h"
#include "model/wan/wan_fixture.h"
#include "model/denoiser.h"
#include "model/pth.h"
#include "model/text/umt5_tokenizer.h"
#include "model/text_context.h"
#include "model/weights.h"

namespace astraea {
namespace {


Umt5Config small() {
  Umt5Config c;
  c.vocab = 64, c.dim = 32, c.dim_attn = 32, c.dim_ffn = 48, c.heads = 4, c.layers = 2, c.text_len = 160;
  return c;
}

// Wan's own _relative_position_bucket, offset by offset from -300 to 300 (exact, logarithmic,
// clamped; keys after the query in the upper half).
TEST(Umt5, RelativeBucketsMatchWans) {
  const auto f = SafetensorsFile::open(kWanFixtures + "/umt5.safetensors");
  const auto relative = wan_fixture(f, "umt5.relative"), buckets = wan_fixture(f, "umt5.buckets");
  ASSERT_EQ(relative.numel(), 601);
  for (int64_t i = 0; i < relative.numel(); ++i) {
    const auto r = static_cast<int64_t>(relative[i].item<float>());
    EXPECT_EQ(t5_relative_bucket(r, 32, 128), static_cast<int64_t>(buckets[i].item<float>())) << r;
  }
}

// Wan's T5Encoder at a reduced size, its weights read from the .pth its state_dict() was saved to:
// each prompt's real tokens, encoded alone, give the official output of the padded batch there.
TEST(Umt5, MatchesWansEncoderOnPaddedPrompts) {
  const auto f = SafetensorsFile::open(kWanFixtures + "/umt5.safetensors");
  const Umt5Encoder encoder(small(), read_pth(kWanFixtures + "/umt5.pth"), at::kCPU, at::kFloat, "umt5.pth");
  const auto ids = wan_fixture(f, "umt5.ids"), lens = wan_fixture(f, "umt5.lens"), out = wan_fixture(f, "umt5.out");
  for (int64_t b = 0; b < 2; ++b) {
    const auto n = static_cast<int64_t>(lens[b].item<float>());
    std::vector<int64_t> prompt;
    for (int64_t i = 0; i < n; ++i) prompt.push_back(static_cast<int64_t>(ids[b][i].item<float>()));
    const auto got = encoder.encode(prompt);
    const auto want = out[b].narrow(0, 0, n);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_LT((got - want).abs().max().item<float>(), 1e-5 * (1 + want.abs().max().item<float>())) << b;
  }
}

TEST(Umt5, NamesBadWeightsAndTokens) {
  auto weights = read_pth(kWanFixtures + "/umt5.pth");
  auto expect = [&](std::map<std::string, at::Tensor> w, const std::string& what) {
    try {
      Umt5Encoder(small(), w, at::kCPU, at::kFloat, "enc.pth");
      ADD_FAILURE() << what;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("enc.pth: " + what), std::string::npos) << e.what();
    }
  };
  auto missing = weights;
  missing.erase("blocks.1.ffn.fc2.weight");
  expect(missing, "missing tensor 'blocks.1.ffn.fc2.weight'");
  auto misshaped = weights;
  misshaped["blocks.0.attn.q.weight"] = at::zeros({32, 31});
  expect(misshaped, "tensor 'blocks.0.attn.q.weight' has shape [32, 31]");
  auto extra = weights;
  extra["decoder.norm.weight"] = at::zeros({32});
  expect(extra, "unexpected tensor 'decoder.norm.weight'");
  const Umt5Encoder encoder(small(), weights, at::kCPU, at::kFloat, "enc.pth");
  EXPECT_THROW(encoder.encode({}), std::invalid_argument);
  EXPECT_THROW(encoder.encode({3, 64}), std::invalid_argument);
  EXPECT_THROW(encoder.encode(std::vector<int64_t>(161, 3)), std::invalid_argument);
}

// A Wan 2.1 release folder's umT5 and tokenizer encode the prompt and, unless another is given,
// the official negative prompt; each context equals the encoder's output on the tokenizer's ids.
// A folder without them is named with the missing file.
TEST(Umt5, AReleaseFolderEncodesThePromptAndTheOfficialNegativePrompt) {
  if (!ASTRAEA_HAS_SENTENCEPIECE) GTEST_SKIP() << "this build has no SentencePiece";
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("astraea_release_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "google/umt5-xxl");
  ModelConfig c = model_preset("wan2.1-1.3b");  // a Wan DiT of umT5's fixture width, shrunk
  c.dim = 24, c.ffn_dim = 40, c.heads = 2, c.layers = 1, c.text_dim = 32, c.freq_dim = 16;
  const auto model = make_denoiser(c, random_weights(c, 1, at::kCPU, at::kFloat), at::kFloat);
  TextOptions refused;  // nothing here reads a negative prompt: refused, not ignored
  refused.negative_prompt = "blurry";
  EXPECT_THROW(text_contexts(*model, "a cat", refused), FieldError);
  TextOptions o;
  o.release_dir = dir.string();
  try {
    text_contexts(*model, "a cat", o);
    ADD_FAILURE() << "encoded without the release's files";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "models_t5_umt5-xxl-enc-bf16.pth: missing from the Wan 2.1 release folder"),
              std::string::npos)
        << e.what();
  }
  fs::copy_file(kWanFixtures + "/umt5.pth", dir / "models_t5_umt5-xxl-enc-bf16.pth");
  fs::copy_file(kWanFixtures + "/spiece.model", dir / "google/umt5-xxl/spiece.model");
  const Umt5Tokenizer tokenizer(kWanFixtures + "/spiece.model");
  const auto weights = read_pth(kWanFixtures + "/umt5.pth");
  const Umt5Encoder encoder(umt5_config_of(weights, "umt5.pth"), weights, at::kCPU, at::kFloat, "umt5.pth");
  const std::string prompt = "a cat walks on the grass at sunset";
  auto text = text_contexts(*model, prompt, o);
  EXPECT_TRUE(at::allclose(text.cond, encoder.encode(tokenizer.encode(prompt, 512)), 1e-6, 1e-6));
  EXPECT_TRUE(
      at::allclose(text.uncond, encoder.encode(tokenizer.encode(kWanNegativePrompt, 512)), 1e-6, 1e-6));
  EXPECT_NE(text.source.find("umT5-XXL from"), std::string::npos) << text.source;
  o.negative_prompt = "";
  text = text_contexts(*model, prompt, o);
  EXPECT_EQ(text.uncond.size(0), 1);  // only </s>
  fs::remove_all(dir);
}

}  // namespace
}  // namespace astraea
