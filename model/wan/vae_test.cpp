#include "model/wan/vae.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "model/wan/wan_fixture.h"
#include "model/pth.h"

namespace astraea {
namespace {


float max_error(const at::Tensor& got, const at::Tensor& want) { return (got - want).abs().max().item<float>(); }

class WanVaeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    weights_ = read_pth(kWanFixtures + "/vae.pth");
    vae_ = std::make_unique<WanVae>(wan_vae_config_of(weights_, "vae.pth"), weights_, at::kCPU, "vae.pth");
  }
  std::map<std::string, at::Tensor> weights_;
  std::unique_ptr<WanVae> vae_;
  SafetensorsFile f_ = SafetensorsFile::open(kWanFixtures + "/vae.safetensors");
};

// Wan's WanVAE_ at dim 4, its weights read from the .pth its state_dict() was saved to: 3 latent
// frames decode, one chunk at a time through the causal caches, to Wan's 9 frames.
TEST_F(WanVaeTest, DecodeMatchesWans) {
  EXPECT_EQ(vae_->config().dim, 4);
  EXPECT_EQ(vae_->config().z_dim, 16);
  const auto want = wan_fixture(f_, "decoded");
  const auto got = vae_->decode(wan_fixture(f_, "latents"));
  ASSERT_EQ(got.sizes(), want.sizes());
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{3, 9, 16, 24}));
  EXPECT_LT(max_error(got, want), 1e-5);
  EXPECT_GT(want.abs().mean().item<float>(), 0.05) << "a fixture of zeros would prove nothing";
}

// A 5-frame video encodes, 1 then 4 frames, to Wan's 2 latent frames of means.
TEST_F(WanVaeTest, EncodeMatchesWans) {
  const auto want = wan_fixture(f_, "mu");
  const auto got = vae_->encode(wan_fixture(f_, "video"));
  ASSERT_EQ(got.sizes(), want.sizes());
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{16, 2, 2, 3}));
  EXPECT_LT(max_error(got, want), 1e-5 * (1 + want.abs().max().item<float>()));
}

// Causality: a frame's pixels depend on its own latent frame and earlier ones, never on later ones.
TEST_F(WanVaeTest, LaterLatentFramesLeaveEarlierPixelsAlone) {
  auto latents = wan_fixture(f_, "latents");
  const auto a = vae_->decode(latents);
  latents.narrow(1, 2, 1).mul_(-3);
  const auto b = vae_->decode(latents);
  EXPECT_TRUE(at::equal(a.narrow(1, 0, 5), b.narrow(1, 0, 5)));  // 1 + 4 frames of latent frames 0, 1
  EXPECT_GT(max_error(a.narrow(1, 5, 4), b.narrow(1, 5, 4)), 1e-3);
}

// Tiles at least as large as the latent decode it whole; smaller ones cover every pixel, blended
// across their overlap, close to the whole decode (each tile sees less context at its edges).
TEST_F(WanVaeTest, TiledDecodingCoversThePictureAndStaysClose) {
  const auto latents = at::randn({16, 2, 6, 7}, at::TensorOptions().dtype(at::kFloat));
  const auto whole = vae_->decode(latents);
  EXPECT_TRUE(at::equal(vae_->decode(latents, {7, 2}), whole));
  const auto tiled = vae_->decode(latents, {4, 2});
  ASSERT_EQ(tiled.sizes(), whole.sizes());
  EXPECT_TRUE(at::isfinite(tiled).all().item<bool>());
  EXPECT_LE(tiled.abs().max().item<float>(), 1.0f);
  EXPECT_LT((tiled - whole).abs().mean().item<float>(), 0.5 * whole.abs().mean().item<float>());
  EXPECT_THROW(vae_->decode(latents, {4, 4}), std::invalid_argument);
  // Tiled along one side only, and tiles that do not overlap: every pixel still covered once.
  for (const VaeTiling t : {VaeTiling{6, 2}, VaeTiling{4, 0}}) {
    const auto part = vae_->decode(latents, t);
    ASSERT_EQ(part.sizes(), whole.sizes());
    EXPECT_TRUE(at::isfinite(part).all().item<bool>()) << t.tile;
    EXPECT_LT((part - whole).abs().mean().item<float>(), 0.5 * whole.abs().mean().item<float>()) << t.tile;
  }
}

TEST_F(WanVaeTest, RefusesMisshapedInputsAndWeightsByName) {
  auto expect = [](const std::function<void()>& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected " << needle;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect([&] { vae_->encode(at::zeros({3, 4, 16, 16})); }, "[3, 1 + 4k, 8m, 8n]");
  expect([&] { vae_->decode(at::zeros({4, 1, 2, 2})); }, "latents [16, T, h, w]");
  auto w = weights_;
  w.erase("decoder.middle.1.proj.weight");
  expect([&] { WanVae(vae_->config(), w, at::kCPU, "v.pth"); }, "v.pth: missing tensor 'decoder.middle.1.proj.weight'");
  w = weights_;
  w["decoder.head.2.bias"] = at::zeros({4});
  expect([&] { WanVae(vae_->config(), w, at::kCPU, "v.pth"); }, "tensor 'decoder.head.2.bias' has shape [4]");
  w = weights_;
  w["model.extra"] = at::zeros({1});
  expect([&] { WanVae(vae_->config(), w, at::kCPU, "v.pth"); }, "unexpected tensor 'model.extra' (is this the Wan VAE's file?)");
  w = weights_;
  w.erase("conv2.weight");
  expect([&] { wan_vae_config_of(w, "v.pth"); }, "v.pth: tensor 'conv2.weight' is missing");
}

}  // namespace
}  // namespace astraea
