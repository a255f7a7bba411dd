// The DiT's parts against hand-computed references.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/field_error.h"
#include "kernels/rms_norm_rope.cuh"
#include "model/attention.h"
#include "model/cpu_threads.h"
#include "model/block_ops.h"
#include "model/denoiser.h"
#include "model/torch_compat.h"
#include "model/wan/dit.h"
#include "model/weights.h"
#include "model/word_tokenizer.h"

namespace astraea {
namespace {

ModelConfig small_config() {
  ModelConfig c = model_preset("tiny");
  c.dim = 24;
  c.ffn_dim = 40;
  c.heads = 2;  // head_dim 12: rotary pairs split 2 / 2 / 2
  c.layers = 2;
  c.text_dim = 8;
  c.text_len = 5;
  c.freq_dim = 16;
  return c;
}

TEST(CpuThreads, ThePoolTakesTheCpusOtherRunnableTasksLeave) {
  // /proc/loadavg counts ourselves among the runnable tasks.
  EXPECT_EQ(astraea::cpu_threads_for(2, 1), 2);
  EXPECT_EQ(astraea::cpu_threads_for(2, 3), 1);   // two busy processes on two CPUs
  EXPECT_EQ(astraea::cpu_threads_for(16, 3), 14);
  EXPECT_EQ(astraea::cpu_threads_for(4, 40), 1);  // never fewer than one
  EXPECT_EQ(astraea::cpu_threads_for(4, 0), 4);   // a count without ourselves is not negative work
  astraea::CpuThreads c{1, 2, 2, false};
  EXPECT_EQ(c.describe(), "1 thread on 2 CPUs, 2 busy with other work");
  c = {3, 8, 0, true};
  EXPECT_EQ(c.describe(), "3 threads on 8 CPUs (ASTRAEA_CPU_THREADS)");
}

TEST(Rope, InverseFrequenciesFollowWanAxisSplit) {
  // head_dim 128: 64 pairs = 22 (time) + 21 (height) + 21 (width), each axis restarting at 1.
  std::vector<float> f(64);
  kernels::wan_rope_inv_freq(128, 10000.0, f.data());
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_NEAR(f[1], std::pow(10000.0, -1.0 / 22), 1e-7);
  EXPECT_FLOAT_EQ(f[22], 1.0f);
  EXPECT_NEAR(f[23], std::pow(10000.0, -1.0 / 21), 1e-7);
  EXPECT_FLOAT_EQ(f[43], 1.0f);
  EXPECT_NEAR(f[63], std::pow(10000.0, -20.0 / 21), 1e-9);
}

TEST(Rope, RotatesEachAxisPairByItsGridPosition) {
  // head_dim 6: one pair per axis, all with inverse frequency 1, so the angles are f, h and w.
  // Token 5 of a 2x2x2 grid sits at f = 1, h = 0, w = 1. The input has RMS 1, so the norm keeps it.
  RopeGrid g{2, 2, 2, at::ones({3})};
  auto src = at::zeros({8, 6});
  src[5] = at::tensor({1.f, 1.f, 1.f, -1.f, -1.f, 1.f});
  auto out = rms_norm_rope(src, at::ones({6}), &g, 1, 0.0);
  const double c = std::cos(1.0), s = std::sin(1.0);
  const double expected[6] = {c - s, s + c, 1, -1, -c - s, -s + c};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(out[5][i].item<float>(), expected[i], 1e-6) << i;
}

TEST(RmsNorm, NormalisesOverTheWholeRowThenScales) {
  auto src = at::tensor({3.f, 4.f}).view({1, 2});  // mean square 12.5
  auto out = rms_norm_rope(src, at::tensor({1.f, 2.f}), nullptr, 1, 0.0);
  EXPECT_NEAR(out[0][0].item<float>(), 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(out[0][1].item<float>(), 2 * 4 / std::sqrt(12.5), 1e-6);
}

TEST(Modulation, LayerNormThenScaleAndShift) {
  // Row [1, 2, 3, 4]: mean 2.5, biased variance 1.25.
  auto x = at::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 4});
  auto scale = at::tensor({0.f, 1.f, -0.5f, 2.f}), shift = at::tensor({0.f, 0.5f, 1.f, -1.f});
  auto out = residual_layer_norm(x, {}, {}, scale + 1.0, shift, at::kFloat, 0.0);
  const double r = 1 / std::sqrt(1.25);
  const double expected[4] = {-1.5 * r, -0.5 * r * 2 + 0.5, 0.5 * r * 0.5 + 1, 1.5 * r * 3 - 1};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[0][i].item<float>(), expected[i], 1e-6) << i;
}

TEST(Modulation, GatedResidualUpdatesInPlace) {
  auto x = at::tensor({1.f, 2.f}).view({1, 2});
  residual_layer_norm(x, at::tensor({10.f, 10.f}).view({1, 2}), at::tensor({0.5f, -1.f}), {}, {}, at::kFloat,
                      1e-6, false);
  EXPECT_FLOAT_EQ(x[0][0].item<float>(), 6.f);
  EXPECT_FLOAT_EQ(x[0][1].item<float>(), -8.f);
}

TEST(Attention, MatchesHandComputedSoftmaxAndLogSumExp) {
  // One query [1, 0] over keys [1, 0] and [0, 1], head_dim 2: scores 1/sqrt(2) and 0.
  auto q = at::tensor({1.f, 0.f}).view({1, 1, 2});
  auto k = at::tensor({1.f, 0.f, 0.f, 1.f}).view({2, 1, 2});
  auto v = at::tensor({1.f, 2.f, 3.f, 4.f}).view({2, 1, 2});
  auto r = attention(q, k, v, true);
  const double e0 = std::exp(1 / std::sqrt(2.0)), p0 = e0 / (e0 + 1), p1 = 1 / (e0 + 1);
  EXPECT_NEAR(r.out[0][0].item<float>(), p0 * 1 + p1 * 3, 1e-6);
  EXPECT_NEAR(r.out[0][1].item<float>(), p0 * 2 + p1 * 4, 1e-6);
  EXPECT_NEAR(r.lse[0][0].item<float>(), std::log(e0 + 1), 1e-6);
}

TEST(Attention, MathPathMatchesNaiveSoftmaxPerHead) {
  at::manual_seed(7);
  auto q = at::randn({37, 3, 8}), k = at::randn({53, 3, 8}), v = at::randn({53, 3, 8});
  auto r = attention(q, k, v, true, AttentionBackend::kMath);
  for (int64_t h = 0; h < 3; ++h) {
    auto s = at::matmul(q.select(1, h), k.select(1, h).t()) / std::sqrt(8.0);
    auto ref = at::matmul(at::softmax(s, -1), v.select(1, h));
    EXPECT_TRUE(at::allclose(r.out.view({37, 3, 8}).select(1, h), ref, 1e-5, 1e-5));
    EXPECT_TRUE(at::allclose(r.lse[h], at::logsumexp(s, -1), 1e-5, 1e-5));
  }
}

TEST(TimestepEmbedding, CosineHalfThenSineHalf) {
  auto e = WanDiT::timestep_embedding(4, at::ones({1}))[0];  // frequencies 10000^(-k/2): 1 and 0.01
  EXPECT_NEAR(e[0].item<float>(), std::cos(1.0), 1e-7);
  EXPECT_NEAR(e[1].item<float>(), std::cos(0.01), 1e-7);
  EXPECT_NEAR(e[2].item<float>(), std::sin(1.0), 1e-7);
  EXPECT_NEAR(e[3].item<float>(), std::sin(0.01), 1e-7);
}

TEST(WanDiT, UnpatchifyPutsEachHeadOutputAtItsPixel) {
  // With a zero head weight the output is the head bias, laid out (pt, ph, pw, C) per token.
  const auto c = small_config();
  auto w = random_weights(c, 1, at::kCPU, at::kFloat);
  w["head.head.weight"].zero_();
  auto& bias = w["head.head.bias"];  // 1 * 4 * 4 * 3 = 48 values
  bias.copy_(at::arange(48, at::kFloat));
  WanDiT model(c, std::move(w), at::kFloat);
  auto ctx = model.embed_context(at::randn({3, c.text_dim}));
  auto out = model.forward(at::randn({3, 2, 8, 8}), 500.0, ctx);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{3, 2, 8, 8}));
  for (int64_t ch = 0; ch < 3; ++ch)
    for (int64_t y = 0; y < 8; ++y)
      for (int64_t x = 0; x < 8; ++x)
        ASSERT_FLOAT_EQ(out[ch][1][y][x].item<float>(), static_cast<float>(((y % 4) * 4 + x % 4) * 3 + ch));
}

TEST(WanDiT, DependsOnContextTimestepAndInput) {
  const auto c = small_config();
  WanDiT model(c, random_weights(c, 2, at::kCPU, at::kFloat), at::kFloat);
  auto x = at::randn({3, 2, 8, 8});
  auto ctx_a = model.embed_context(at::randn({3, c.text_dim}));
  auto ctx_b = model.embed_context(at::randn({3, c.text_dim}));
  auto base = model.forward(x, 500.0, ctx_a);
  EXPECT_TRUE(base.isfinite().all().item<bool>());
  EXPECT_TRUE(at::equal(base, model.forward(x, 500.0, ctx_a)));
  EXPECT_GT((base - model.forward(x, 500.0, ctx_b)).abs().max().item<float>(), 1e-4);
  EXPECT_GT((base - model.forward(x, 100.0, ctx_a)).abs().max().item<float>(), 1e-4);
  EXPECT_GT((base - model.forward(x + 0.1, 500.0, ctx_a)).abs().max().item<float>(), 1e-4);
}

TEST(Denoiser, MakeDenoiserBuildsTheConfigsFamilyAndNamesAnUnknownOne) {
  auto c = small_config();
  ASSERT_EQ(c.family, "wan2.1");
  const auto made = make_denoiser(c, random_weights(c, 4, at::kCPU, at::kFloat), at::kFloat);
  WanDiT direct(c, random_weights(c, 4, at::kCPU, at::kFloat), at::kFloat);
  EXPECT_NE(dynamic_cast<const WanDiT*>(made.get()), nullptr);
  EXPECT_TRUE(made->has_tokenwise());
  auto x = at::randn({3, 2, 8, 8});
  auto text = at::randn({3, c.text_dim});
  EXPECT_TRUE(at::equal(made->forward(x, 250.0, made->embed_context(text)),
                        direct.forward(x, 250.0, direct.embed_context(text))));
  EXPECT_EQ(model_family(c).parameter_specs(c).size(), parameter_specs(c).size());

  c.family = "hunyuan";
  try {
    make_denoiser(c, {}, at::kFloat);
    FAIL() << "an unknown family was built";
  } catch (const FieldError& e) {
    EXPECT_EQ(e.fields(), std::vector<std::string>{"family"});
    EXPECT_NE(std::string(e.what()).find("hunyuan"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("wan2.1"), std::string::npos);
  }
  EXPECT_THROW(parameter_specs(c), FieldError);
}

TEST(TextEncoder, BatchedPromptsMatchOneByOneAndPadWithZeros) {
  const auto& c = model_preset("tiny");
  WanDiT model(c, random_weights(c, 6, at::kCPU, at::kFloat), at::kFloat);
  const std::vector<std::string> prompts{
      "a red circle moving left on a gray background", "",
      "a blue square moving up and a yellow triangle standing still on a black background"};
  auto batch = model.encode_prompts(prompts);
  ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{3, c.text_len, c.text_dim}));
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto one = model.encode_prompt(prompts[i]);
    const int64_t n = one.size(0);
    EXPECT_EQ(n, static_cast<int64_t>(word_ids(c.vocabulary, prompts[i]).size()));
    EXPECT_TRUE(at::allclose(batch[static_cast<int64_t>(i)].narrow(0, 0, n), one, 1e-5, 1e-6)) << i;
    EXPECT_EQ(batch[static_cast<int64_t>(i)].narrow(0, n, c.text_len - n).abs().max().item<float>(), 0.f)
        << i;
    if (n > 0) EXPECT_GT(one.abs().max().item<float>(), 0.1f);
  }
  // The words bind to each other: the same colour word reads differently beside another shape.
  auto a = model.encode_prompt("a red circle"), b = model.encode_prompt("a red square");
  EXPECT_GT((a[1] - b[1]).abs().max().item<float>(), 1e-3);
  EXPECT_THROW(model.encode_prompt("a red dodecahedron"), std::invalid_argument);
}

TEST(Weights, SaveLoadRoundTripGivesTheSameModel) {
  const auto c = small_config();
  const auto path = (std::filesystem::temp_directory_path() / "astraea_weights_rt.safetensors").string();
  save_weights(path, random_weights(c, 3, at::kCPU, at::kFloat));
  WanDiT a(c, random_weights(c, 3, at::kCPU, at::kFloat), at::kFloat);
  WanDiT b(c, load_weights(path, c, at::kCPU, at::kFloat), at::kFloat);
  auto x = at::randn({3, 2, 8, 8});
  auto text = at::randn({2, c.text_dim});
  EXPECT_TRUE(
      at::equal(a.forward(x, 10.0, a.embed_context(text)), b.forward(x, 10.0, b.embed_context(text))));
  std::filesystem::remove(path);
}

TEST(Weights, LoadNamesMissingMisshapedAndUnexpectedTensors) {
  const auto c = small_config();
  const auto dir = std::filesystem::temp_directory_path();
  auto expect_error = [&](Weights w, const std::string& what) {
    const auto path = (dir / "astraea_weights_bad.safetensors").string();
    save_weights(path, w);
    try {
      load_weights(path, c, at::kCPU, at::kFloat);
      ADD_FAILURE() << "loaded a file with " << what;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    std::filesystem::remove(path);
  };
  auto w = random_weights(c, 4, at::kCPU, at::kFloat);
  auto missing = w;
  missing.erase("blocks.1.ffn.2.bias");
  expect_error(missing, "missing tensor 'blocks.1.ffn.2.bias'");
  auto misshaped = w;
  misshaped["blocks.0.self_attn.q.weight"] = at::zeros({24, 23});
  expect_error(misshaped, "'blocks.0.self_attn.q.weight' has shape [24, 23]");
  auto extra = w;
  extra["blocks.9.ffn.0.weight"] = at::zeros({1});
  expect_error(extra, "unexpected tensor 'blocks.9.ffn.0.weight'");
}

// A checkpoint split into shards with an index, as Wan2.1-14B ships, loads the same weights as
// the one file; a misshaped tensor is named with the shard that holds it.
TEST(Weights, AShardedCheckpointLoadsLikeOneFile) {
  const auto c = small_config();
  const auto dir = std::filesystem::temp_directory_path() / ("astraea_sharded_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto w = random_weights(c, 5, at::kCPU, at::kFloat);
  Weights first, second;
  nlohmann::json map;
  for (const auto& [name, t] : w) {
    const bool in_first = name.rfind("blocks.1.", 0) != 0;
    (in_first ? first : second)[name] = t;
    map[name] = in_first ? "m-00001-of-00002.safetensors" : "m-00002-of-00002.safetensors";
  }
  save_weights((dir / "m-00001-of-00002.safetensors").string(), first);
  save_weights((dir / "m-00002-of-00002.safetensors").string(), second);
  std::ofstream((dir / "diffusion_pytorch_model.safetensors.index.json").string())
      << nlohmann::json{{"weight_map", map}}.dump();
  const auto loaded = load_weights(dir.string(), c, at::kCPU, at::kFloat);  // the folder
  ASSERT_EQ(loaded.size(), w.size());
  for (const auto& [name, t] : w) EXPECT_TRUE(at::equal(loaded.at(name), t)) << name;
  second["blocks.1.ffn.0.bias"] = at::zeros({3});
  save_weights((dir / "m-00002-of-00002.safetensors").string(), second);
  try {
    load_weights(dir.string(), c, at::kCPU, at::kFloat);
    ADD_FAILURE() << "loaded a misshaped shard";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "m-00002-of-00002.safetensors: tensor 'blocks.1.ffn.0.bias' has shape [3]"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove_all(dir);
}

// An image-to-video checkpoint is named as one, not reported as an unexpected tensor.
TEST(Weights, AnImageToVideoCheckpointIsNamedAsUnsupported) {
  const auto c = small_config();
  const auto path = (std::filesystem::temp_directory_path() /
                     ("astraea_i2v_" + std::to_string(::getpid()) + ".safetensors"))
                        .string();
  auto w = random_weights(c, 6, at::kCPU, at::kFloat);
  w["blocks.0.cross_attn.k_img.weight"] = at::zeros({c.dim, c.dim});
  w["img_emb.proj.1.weight"] = at::zeros({c.dim, 4});
  save_weights(path, w);
  try {
    load_weights(path, c, at::kCPU, at::kFloat);
    ADD_FAILURE() << "loaded an i2v checkpoint";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": an image-to-video checkpoint (tensor '"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("image-to-video is not supported"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

TEST(Weights, SpecsMatchPresetParameterCount) {
  for (const auto& c : model_presets()) {
    int64_t n = 0;
    for (const auto& s : parameter_specs(c)) {
      int64_t k = 1;
      for (auto d : s.shape) k *= d;
      n += k;
    }
    EXPECT_EQ(n, c.parameter_count()) << c.name;
  }
  // Position features add one [dim, 6 x octaves] matrix.
  auto with_positions = model_preset("tiny"), without = with_positions;
  with_positions.position_octaves = 4;
  without.position_octaves = 0;
  const auto count = [](const ModelConfig& c) {
    int64_t n = 0;
    for (const auto& s : parameter_specs(c))
      n += s.name == "pos_embedding.weight" ? s.shape[0] * s.shape[1] : 0;
    return n;
  };
  EXPECT_EQ(count(with_positions), 24 * with_positions.dim);
  EXPECT_EQ(count(without), 0);
  EXPECT_EQ(with_positions.parameter_count() - without.parameter_count(), 24 * with_positions.dim);
  // Wan2.1-1.3B's DiT has about 1.42 billion parameters.
  EXPECT_NEAR(model_preset("wan2.1-1.3b").parameter_count() / 1e9, 1.42, 0.02);
}

TEST(PositionFeatures, AreSinesAndCosinesOfNormalisedCoordinates) {
  // Grid 2 x 1 x 4, two octaves. Token 7 sits at frame 1, row 0, column 3: u = 0.75, 0.5, 0.875.
  const auto p = WanDiT::position_features(2, 1, 4, 2);
  ASSERT_EQ(p.sizes(), (at::IntArrayRef{8, 12}));
  const double r = std::sqrt(0.5), s = std::sin(0.875 * M_PI), k = std::cos(0.875 * M_PI);
  const double expected[12] = {r, -r, -1, 0,   // frame: sin, cos of pi u, then of 2 pi u
                               1, 0,  0,  -1,  // row
                               s, k,  -r, r};  // column
  for (int i = 0; i < 12; ++i) EXPECT_NEAR(p[7][i].item<float>(), expected[i], 1e-6) << i;
  // Normalised: frame 0 of 2 and frame 1 of 6 both sit a quarter into the clip (u = 0.25).
  EXPECT_TRUE(
      at::allclose(WanDiT::position_features(2, 1, 1, 3)[0], WanDiT::position_features(6, 1, 1, 3)[1]));
  EXPECT_NEAR(WanDiT::position_features(6, 1, 1, 3)[1][1].item<float>(), std::cos(0.25 * M_PI), 1e-6);
}

TEST(PositionFeatures, EnterOnlyThroughTheirWeightAndBreakTranslationSymmetry) {
  auto c = small_config();
  c.position_octaves = 3;
  auto w = random_weights(c, 6, at::kCPU, at::kFloat);
  ASSERT_EQ(w.at("pos_embedding.weight").sizes(), (at::IntArrayRef{c.dim, 18}));
  auto zeroed = w;
  zeroed["pos_embedding.weight"] = at::zeros({c.dim, 18});
  auto without = w;
  without.erase("pos_embedding.weight");
  auto plain = small_config();
  plain.position_octaves = 0;
  WanDiT with_pos(c, w, at::kFloat), zero_pos(c, zeroed, at::kFloat), no_pos(plain, without, at::kFloat);
  auto x = at::randn({3, 2, 8, 8});
  auto text = at::randn({2, c.text_dim});
  const auto ctx = no_pos.embed_context(text);
  const auto a = with_pos.forward(x, 900.0, ctx), b = zero_pos.forward(x, 900.0, ctx),
             d = no_pos.forward(x, 900.0, ctx);
  EXPECT_TRUE(at::allclose(b, d, 1e-5, 1e-6));
  EXPECT_GT((a - d).abs().max().item<float>(), 1e-3);
  // A constant input: every token's value is the same, so without absolute features every token's
  // output is the same, wherever it sits; with them, the two frames differ.
  const auto flat = at::zeros({3, 2, 8, 8});
  const auto no_f = no_pos.forward(flat, 999.0, ctx), pos_f = with_pos.forward(flat, 999.0, ctx);
  EXPECT_TRUE(at::allclose(no_f.select(1, 0), no_f.select(1, 1), 1e-4, 1e-5));
  EXPECT_GT((pos_f.select(1, 0) - pos_f.select(1, 1)).abs().max().item<float>(), 1e-3);
}

TEST(Weights, ConfigForWeightsReadsThePositionFeaturesFromTheFile) {
  auto plain = small_config();
  plain.position_octaves = 0;
  auto c = small_config();
  c.position_octaves = 2;
  const auto path = (std::filesystem::temp_directory_path() / "astraea_weights_pos.safetensors").string();
  save_weights(path, random_weights(c, 7, at::kCPU, at::kFloat));
  EXPECT_EQ(config_for_weights(plain, path).position_octaves, 2);
  const auto derived = config_for_weights(plain, path);
  WanDiT loaded(derived, load_weights(path, derived, at::kCPU, at::kFloat), at::kFloat);
  EXPECT_EQ(loaded.forward(at::randn({3, 2, 8, 8}), 500.0, loaded.embed_context(at::randn({2, c.text_dim})))
                .sizes(),
            (at::IntArrayRef{3, 2, 8, 8}));
  save_weights(path, random_weights(plain, 7, at::kCPU, at::kFloat));
  EXPECT_EQ(config_for_weights(c, path).position_octaves, 0);
  auto bad = random_weights(plain, 7, at::kCPU, at::kFloat);
  for (const auto& [shape, text] :
       {std::pair<std::vector<int64_t>, std::string>{{24, 7}, "[24, 7]"}, {{25, 12}, "[25, 12]"}}) {
    bad["pos_embedding.weight"] = at::zeros(shape);
    save_weights(path, bad);
    try {
      config_for_weights(plain, path);
      ADD_FAILURE() << "accepted position weights of shape " << text;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path + ": tensor 'pos_embedding.weight' has shape " + text),
                std::string::npos)
          << e.what();
    }
  }
  std::filesystem::remove(path);
}

TEST(VideoShape, MapsWanSizesToTheLatentGrid) {
  const auto s = video_shape(model_preset("wan2.1-1.3b"), 81, 480, 832);
  EXPECT_EQ(s.latent_f, 21);
  EXPECT_EQ(s.grid_h, 30);
  EXPECT_EQ(s.grid_w, 52);
  EXPECT_EQ(s.tokens(), 32760);
  EXPECT_THROW(video_shape(model_preset("wan2.1-1.3b"), 80, 480, 832), std::invalid_argument);
  try {
    video_shape(model_preset("tiny"), 8, 30, 48);
    ADD_FAILURE();
  } catch (const FieldError& e) {  // the library names the field; the command line, its flag
    EXPECT_EQ(e.fields(), std::vector<std::string>{"height"});
    EXPECT_EQ(std::string(e.what()).rfind("height 30 must be a multiple of 4 for tiny", 0), 0u) << e.what();
    EXPECT_EQ(e.render("--").rfind("--height 30 must be a multiple of 4 for tiny", 0), 0u) << e.render("--");
  }
  try {
    video_shape(model_preset("tiny"), 0, 32, 48);
    ADD_FAILURE();
  } catch (const FieldError& e) {
    EXPECT_STREQ(e.what(), "frames, height and width must be positive");
    EXPECT_EQ(e.render("--"), "--frames, --height and --width must be positive");
  }
}

TEST(Attention, KeySplitsFillTheLastWave) {
  // Wan2.1-1.3B at 480p: 32760 keys, 12 heads, 132 multiprocessors (H100 and H200 SXM).
  // 13104 queries (budget 0.4): 12 * 103 = 1236 tiles, 9.36 waves -> 10; 2 parts: 19 / 2 = 9.5 (-5%).
  EXPECT_EQ(choose_key_splits(12, 13104, 32760, 132), 2);
  // Dense: 3072 tiles, 23.3 -> 24 waves; 3 parts would make 70 / 3 = 23.3 (-2.8%), under the 4% bar.
  EXPECT_EQ(choose_key_splits(12, 32760, 32760, 132), 1);
  // Budget 0.3: 924 tiles fill exactly 7 waves.
  EXPECT_EQ(choose_key_splits(12, 9828, 32760, 132), 1);
  // 8 tiles on 132 multiprocessors: 4 parts fill 32 of them, a quarter of the time.
  EXPECT_EQ(choose_key_splits(1, 1024, 65536, 132), 4);
  // ... unless the parts would be under 2048 keys, or do not divide the keys.
  EXPECT_EQ(choose_key_splits(1, 1024, 4096, 132), 2);
  EXPECT_EQ(choose_key_splits(1, 1024, 4095, 132), 1);
  EXPECT_EQ(choose_key_splits(1, 1024, 4097 * 3, 132), 3);
  // No card or nothing to do: one part.
  EXPECT_EQ(choose_key_splits(12, 13104, 32760, 0), 1);
  EXPECT_EQ(choose_key_splits(0, 13104, 32760, 132), 1);
  EXPECT_THROW(set_attention_key_splits(-1), c10::Error);
}

// On a GPU: the bf16 model with fused kernels against the float32 CPU model, and against the
// same bf16 model on ATen operations.
TEST(WanDiTGpu, FusedBf16MatchesCpuFloat32) {
  if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto c = small_config();
  c.dim = 256;
  c.heads = 2;  // head_dim 128, as Wan
  c.ffn_dim = 512;
  const at::Device gpu(at::kCUDA, 0);
  WanDiT cpu(c, random_weights(c, 5, at::kCPU, at::kFloat), at::kFloat);
  WanDiT dev(c, random_weights(c, 5, gpu, at::kBFloat16), at::kBFloat16);
  auto x = at::randn({3, 4, 16, 16});
  auto text = at::randn({4, c.text_dim});
  auto ref = cpu.forward(x, 700.0, cpu.embed_context(text));
  auto fused = dev.forward(x, 700.0, dev.embed_context(text.to(gpu, at::kBFloat16))).cpu();
  set_fused_kernels_disabled(true);
  auto aten = dev.forward(x, 700.0, dev.embed_context(text.to(gpu, at::kBFloat16))).cpu();
  set_fused_kernels_disabled(false);
  auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).norm() / b.norm()).item<double>();
  };
  EXPECT_TRUE(fused.isfinite().all().item<bool>());
  EXPECT_LT(rel(fused, ref), 3e-2);
  EXPECT_LT(rel(fused, aten), 2e-2);
  std::printf("bf16 fused vs fp32 cpu: %.2e, fused vs aten: %.2e, aten vs cpu: %.2e\n", rel(fused, ref),
              rel(fused, aten), rel(aten, ref));
}

TEST(AttentionGpu, FusedKernelsMatchMathWithLogSumExp) {
  if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device gpu(at::kCUDA, 0);
  auto q = at::randn({300, 4, 128}), k = at::randn({420, 4, 128}), v = at::randn({420, 4, 128});
  auto ref = attention(q, k, v, true, AttentionBackend::kMath);
  for (auto b : {AttentionBackend::kFlash, AttentionBackend::kCudnn, AttentionBackend::kEfficient}) {
    auto r = attention(q.to(gpu, at::kBFloat16), k.to(gpu, at::kBFloat16), v.to(gpu, at::kBFloat16), true, b);
    auto out = r.out.cpu().to(at::kFloat);
    EXPECT_LT(((out - ref.out).norm() / ref.out.norm()).item<double>(), 1e-2) << attention_backend_name(b);
    EXPECT_LT((r.lse.cpu() - ref.lse).abs().max().item<double>(), 2e-2) << attention_backend_name(b);
  }
}

/// Forces a key split count for its lifetime (set_attention_key_splits), then restores choosing.
struct ForcedKeySplits {
  explicit ForcedKeySplits(int splits) { set_attention_key_splits(splits); }
  ~ForcedKeySplits() { set_attention_key_splits(0); }
  ForcedKeySplits(const ForcedKeySplits&) = delete;
  ForcedKeySplits& operator=(const ForcedKeySplits&) = delete;
};

// Values as a column slice of a packed k|v projection (passed to the kernels without a copy), and
// cuDNN with the keys split into parts and merged, against the plain call on contiguous tensors:
// batched, and as the engine calls it (one sequence, so the parts' queries are a stride-0 view).
TEST(AttentionGpu, StridedValuesAndSplitKeysMatchOneCall) {
  if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device gpu(at::kCUDA, 0);
  const auto bf = at::TensorOptions().device(gpu).dtype(at::kBFloat16);
  const int64_t nq = 1000, nk = 12288, heads = 4, hd = 128;
  // Scaled queries make peaked attention, so that the parts' log-sum-exps differ and a merge that
  // ignored them would be far off.
  auto q = 3.0 * at::randn({2, nq, heads, hd}, bf), kv = at::randn({2, nk, 2 * heads * hd}, bf);
  auto k = kv.narrow(2, 0, heads * hd).view({2, nk, heads, hd});  // strided: a token every 2 * H * hd
  auto v = kv.narrow(2, heads * hd, heads * hd).view({2, nk, heads, hd});
  const auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a.to(at::kFloat) - b.to(at::kFloat)).norm() / b.to(at::kFloat).norm()).item<double>();
  };
  {
    ForcedKeySplits one(1);
    for (auto b : {AttentionBackend::kFlash, AttentionBackend::kCudnn, AttentionBackend::kEfficient}) {
      const auto plain = attention(q, k.contiguous(), v.contiguous(), true, b);
      const auto strided = attention(q, k, v, true, b);
      EXPECT_LT(rel(strided.out, plain.out), 1e-3) << attention_backend_name(b);
      EXPECT_LT((strided.lse - plain.lse).abs().max().item<double>(), 1e-3) << attention_backend_name(b);
    }
  }
  const auto ref =
      attention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), true, AttentionBackend::kEfficient);
  at::Tensor one_out;
  {
    ForcedKeySplits one(1);
    one_out = attention(q, k, v, true, AttentionBackend::kCudnn).out;
  }
  for (int splits : {2, 3, 4}) {
    SCOPED_TRACE(std::to_string(splits) + " parts");
    ForcedKeySplits forced(splits);
    const auto split = attention(q, k, v, true, AttentionBackend::kCudnn);
    ASSERT_EQ(split.out.sizes(), one_out.sizes());
    ASSERT_EQ(split.lse.sizes(), ref.lse.sizes());
    // One more bf16 rounding than the single call: against float32 attention, about as close.
    EXPECT_LT(rel(split.out, ref.out), 2 * rel(one_out, ref.out) + 2e-3);
    EXPECT_LT(rel(split.out, one_out), 1e-2);
    EXPECT_LT((split.lse - ref.lse).abs().max().item<double>(), 3e-2);
    const auto no_lse = attention(q, k, v, false, AttentionBackend::kCudnn);
    EXPECT_TRUE(at::equal(no_lse.out, split.out));
    EXPECT_FALSE(no_lse.lse.defined());
    // One sequence, [N, H, hd], as the token-wise engine passes it.
    const auto single = attention(q[1], k[1], v[1], true, AttentionBackend::kCudnn);
    EXPECT_LT(rel(single.out, ref.out[1]), 2 * rel(one_out[1], ref.out[1]) + 2e-3);
    EXPECT_LT((single.lse - ref.lse[1]).abs().max().item<double>(), 3e-2);
  }
  std::printf("cuDNN one call vs float32: %.2e\n", rel(one_out, ref.out));
}

}  // namespace
}  // namespace astraea
