// Training on the CPU at a toy size: the loss falls, and a run stopped and resumed ends where an
// uninterrupted run ends.
#include "shapes/train.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <stdexcept>

#include "io/field_error.h"
#include "model/denoiser.h"
#include "model/model_config.h"
#include "model/weights.h"
#include "shapes/shapes_world.h"

namespace astraea {
namespace {

namespace fs = std::filesystem;

TrainOptions toy(const std::string& dir) {
  TrainOptions o;
  o.sizes = {TrainSize{2, 16, 16, 4}};
  o.steps = 12;
  o.warmup = 2;
  o.lr = 2e-3;
  o.checkpoint_every = 4;
  o.checkpoint_dir = dir;
  return o;
}

class Train : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("astraea_train_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(Train, LossFallsOnTheShapesWorld) {
  auto o = toy((dir_ / "a").string());
  o.steps = 40;
  std::vector<double> losses;
  auto r = train(
      o, [&](const TrainProgress& p) { losses.push_back(p.loss); }, 5);
  ASSERT_EQ(r.steps, 40);
  ASSERT_GE(losses.size(), 8u);
  EXPECT_LT(losses.back(), 0.8 * losses.front()) << "first " << losses.front() << ", last " << losses.back();
  EXPECT_FALSE(r.weights.empty());
  EXPECT_TRUE(fs::exists(dir_ / "a" / "state.json"));
  EXPECT_EQ(r.noise_shift, model_preset("tiny").default_shift);  // option 0: the preset's
  // One step in each interval of 5 was timed phase by phase, in the loop's order.
  ASSERT_EQ(r.step_ms.size(), 5u);
  const char* phases[] = {"data", "forward", "backward", "optimizer", "ema"};
  double total = 0;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(r.step_ms[i].first, phases[i]);
    EXPECT_GE(r.step_ms[i].second, 0.0);
    total += r.step_ms[i].second;
  }
  EXPECT_GT(r.step_ms[2].second, 0.0) << "a backward pass takes time";
  EXPECT_LT(total, 1000.0 * r.wall_s / 8) << "8 timed steps cannot take longer than the run";
}

TEST_F(Train, StopAndResumeEndsWhereAnUninterruptedRunEnds) {
  auto whole = train(toy((dir_ / "whole").string()), {});
  auto first = toy((dir_ / "split").string());
  first.stop_after = 5;
  auto part = train(first, {});
  ASSERT_EQ(part.steps, 5);
  auto rest = train(toy((dir_ / "split").string()), {});
  EXPECT_EQ(rest.resumed_at, 5);
  ASSERT_EQ(rest.steps, 12);
  ASSERT_EQ(whole.weights.size(), rest.weights.size());
  for (const auto& [k, v] : whole.weights) {
    EXPECT_TRUE(at::allclose(v, rest.weights.at(k), 1e-5, 1e-6)) << k;
  }
  // The loss record continues across the stop.
  EXPECT_EQ(rest.loss_curve.front().first, 5);
  EXPECT_EQ(rest.loss_curve.back().first, 12);
}

TEST_F(Train, InitStartsFromGivenWeights) {
  // Zero steps of training change nothing: the result is the initial weights themselves.
  auto o = toy((dir_ / "init").string());
  o.steps = 1;
  o.lr = 0;
  o.ema = 0;
  auto first = train(o, {});
  const auto path = (dir_ / "first.safetensors").string();
  save_weights(path, first.weights);
  auto again = toy((dir_ / "init2").string());
  again.steps = 1;
  again.lr = 0;
  again.ema = 0;
  again.seed = 99;  // would give other random weights
  again.init = path;
  auto second = train(again, {});
  for (const auto& [k, v] : first.weights) EXPECT_TRUE(at::equal(v, second.weights.at(k))) << k;
}

// The probe at one noise level, at the toy size, for WEIGHTS.
double toy_gap(const TrainResult& trained) {
  auto config = model_preset("tiny");
  config.position_octaves = trained.position_octaves;
  const auto owned = make_denoiser(config, trained.weights, at::kFloat);
  const Denoiser& model = *owned;
  DirectionProbe probe;
  probe.clips = 12, probe.frames = 4, probe.height = probe.width = 16, probe.sigmas = {0.7};
  return reversed_prompt_gap(model, probe)[0];
}

// The direction contrast makes the model denoise a moving clip worse under its time-reversed
// prompt than under its own; plain flow matching, from the same start on the same data, does not.
TEST_F(Train, DirectionContrastTeachesTheSignOfMotion) {
  auto o = toy("");
  o.position_octaves = 0;  // as measured in docs/shapes.md
  o.sizes = {TrainSize{4, 16, 16, 8}};
  o.steps = 40;
  o.ema = 0;
  const double plain = toy_gap(train(o, {}));
  o.direction_contrast = 10;
  o.contrast_margin = 0.5;
  o.contrast_min_sigma = 0;
  const double contrast = toy_gap(train(o, {}));
  EXPECT_GT(contrast, plain + 0.005) << "plain " << plain << ", with the contrast " << contrast;
}

TEST_F(Train, StartingWeightsDecideThePositionFeaturesAndAFlagMustAgree) {
  auto plain = model_preset("tiny");
  plain.position_octaves = 0;
  const auto init = (dir_ / "plain.safetensors").string();
  fs::create_directories(dir_);
  save_weights(init, random_weights(plain, 1, at::kCPU, at::kFloat));
  auto o = toy("");
  o.steps = 2;
  o.init = init;
  const auto r = train(o, {});
  EXPECT_EQ(r.position_octaves, 0);
  EXPECT_EQ(r.weights.count("pos_embedding.weight"), 0u);
  o.position_octaves = 4;
  try {
    train(o, {});
    ADD_FAILURE() << "trained weights without position features as a model with them";
  } catch (const FieldError& e) {
    EXPECT_EQ(e.render("--"), "--position-octaves 4 does not match " + init + ", which has 0") << e.what();
  }
  o.init.clear();  // from scratch: the flag's, else the preset's
  EXPECT_EQ(train(o, {}).weights.at("pos_embedding.weight").size(1), 24);
  o.position_octaves = -1;
  EXPECT_EQ(train(o, {}).position_octaves, model_preset("tiny").position_octaves);
}

TEST(LossTailMean, WeighsIntervalsByTheirStepsAndCutsTheFirstOneCounted) {
  // Intervals 0-20, 20-40 and a short 40-45 with means 3, 2 and 1.
  const std::vector<std::pair<int64_t, double>> curve = {{20, 3.0}, {40, 2.0}, {45, 1.0}};
  EXPECT_DOUBLE_EQ(loss_tail_mean(curve, 5), 1.0);
  EXPECT_DOUBLE_EQ(loss_tail_mean(curve, 15), (5 * 1.0 + 10 * 2.0) / 15);
  EXPECT_DOUBLE_EQ(loss_tail_mean(curve, 30), (5 * 1.0 + 20 * 2.0 + 5 * 3.0) / 30);
  EXPECT_DOUBLE_EQ(loss_tail_mean(curve, 1000), (5 * 1.0 + 20 * 2.0 + 20 * 3.0) / 45);
  EXPECT_EQ(loss_tail_mean({}, 10), 0.0);
}

// The contrast's reversed-prompt rows ride in the batch's model call; the objective equals the one
// computed from two separate calls, and without contrast rows it is the plain loss.
TEST(TrainingObjective, ContrastRowsInTheBatchCallMatchSeparateCalls) {
  const auto config = model_preset("tiny");
  const auto owned = make_denoiser(config, random_weights(config, 5, at::kCPU, at::kFloat), at::kFloat);
  const Denoiser& model = *owned;
  at::manual_seed(3);
  const auto xt = at::randn({3, 3, 2, 16, 16}), target = at::randn({3, 3, 2, 16, 16});
  const auto sigma = at::tensor({0.9f, 0.4f, 0.7f});
  const std::vector<std::string> prompts = {"a red circle moving left on a gray background",
                                            "a blue square standing still on a black background",
                                            "a white triangle moving up on a navy background"};
  const std::vector<int64_t> rows = {0, 2};
  const std::vector<std::string> reversed = {"a red circle moving right on a gray background",
                                             "a white triangle moving down on a navy background"};
  const double weight = 3, margin = 0.5;  // a margin the random model cannot meet: the hinge is on
  at::NoGradGuard no_grad;

  const auto call = [&](const at::Tensor& x, const at::Tensor& s, const std::vector<std::string>& p) {
    return model.forward_batch(x, s * 1000.0, model.embed_context(model.encode_prompts(p)));
  };
  const auto pred = call(xt, sigma, prompts);
  const auto idx = at::tensor(rows);
  const auto other = call(xt.index_select(0, idx), sigma.index_select(0, idx), reversed);
  const double loss = at::mse_loss(pred, target).item<double>();
  double hinge = 0;
  for (size_t j = 0; j < rows.size(); ++j) {
    const auto t = target[rows[j]];
    const double own = (pred[rows[j]] - t).pow(2).mean().item<double>();
    const double wrong = (other[static_cast<int64_t>(j)] - t).pow(2).mean().item<double>();
    hinge += std::max(0.0, margin * own - (wrong - own)) / static_cast<double>(rows.size());
  }
  ASSERT_GT(hinge, 0.0) << "the test needs the hinge active";

  const auto got = training_objective(model, xt, sigma, target, prompts, rows, reversed, weight, margin);
  EXPECT_NEAR(got.loss.item<double>(), loss, 1e-5 * loss);
  EXPECT_NEAR(got.objective.item<double>(), loss + weight * hinge, 1e-5 * (loss + weight * hinge));
  const auto plain = training_objective(model, xt, sigma, target, prompts, {}, {}, weight, margin);
  EXPECT_NEAR(plain.objective.item<double>(), loss, 1e-5 * loss);
  EXPECT_THROW(training_objective(model, xt, sigma, target, prompts, rows, {reversed[0]}, weight, margin),
               std::invalid_argument);
}

TEST(TrainSizes, ParsesAndNamesTheFlag) {
  auto s = parse_train_sizes("8x32x48:32,16x64x64:8", "--sizes");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].frames, 16);
  EXPECT_EQ(s[1].batch, 8);
  try {
    parse_train_sizes("8x32:4", "--sizes");
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--sizes '8x32:4'"), std::string::npos);
  }
}

}  // namespace
}  // namespace astraea
