// Training on the CPU at a toy size: the loss falls, and a run stopped and resumed ends where an
// uninterrupted run ends.
#include "core/train.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

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
  auto r = train(o, [&](const TrainProgress& p) { losses.push_back(p.loss); }, 5);
  ASSERT_EQ(r.steps, 40);
  ASSERT_GE(losses.size(), 8u);
  EXPECT_LT(losses.back(), 0.8 * losses.front()) << "first " << losses.front() << ", last " << losses.back();
  EXPECT_FALSE(r.weights.empty());
  EXPECT_TRUE(fs::exists(dir_ / "a" / "state.json"));
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
