#include "model/sampler.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <tuple>

#include "io/safetensors.h"

namespace astraea {
namespace {

TEST(FlowSigmas, UniformWithoutShiftAndBentTowardNoiseWithIt) {
  auto s = flow_sigmas(2, 1.0);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_DOUBLE_EQ(s[1], 0.5);
  EXPECT_DOUBLE_EQ(s[2], 0.0);
  EXPECT_DOUBLE_EQ(flow_sigmas(2, 3.0)[1], 0.75);  // 3 * 0.5 / (1 + 2 * 0.5)
  EXPECT_DOUBLE_EQ(flow_sigmas(4, 5.0)[1], 5 * 0.75 / (1 + 4 * 0.75));
  EXPECT_THROW(flow_sigmas(0, 1.0), std::invalid_argument);
}

TEST(SampleEuler, ExactVelocityRecoversTheDataOnAStraightPath) {
  // Flow matching's path x_s = (1 - s) data + s noise has constant velocity noise - data.
  auto data = at::randn({3, 2, 4, 4}), noise = at::randn({3, 2, 4, 4});
  std::vector<int64_t> seen;
  auto out = sample_euler(noise, flow_sigmas(7, 3.0), [&](const at::Tensor& x, double s, int64_t step) {
    seen.push_back(step);
    EXPECT_TRUE(at::allclose(x, (1 - s) * data + s * noise, 1e-5, 1e-5)) << step;
    return noise - data;
  });
  EXPECT_TRUE(at::allclose(out, data, 1e-5, 1e-5));
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(SampleEuler, OneStepMovesBySigmaDifferenceTimesVelocity) {
  auto out = sample_euler(at::ones({1}), {1.0, 0.25},
                          [](const at::Tensor&, double, int64_t) { return at::full({1}, 2.0); });
  EXPECT_FLOAT_EQ(out.item<float>(), 1.0f - 0.75f * 2.0f);
}

TEST(SampleUniPc, ExactVelocityRecoversTheDataOnAStraightPath) {
  // With v = noise - data every x0 prediction is the data, and each UniP step lands on the path.
  auto data = at::randn({2, 3, 4}), noise = at::randn({2, 3, 4});
  const auto grid = unipc_grid(9, 5.0);
  const double s0 = grid.sigmas[0];  // 0.999: the path's point there is the start
  auto out = sample_unipc((1 - s0) * data + s0 * noise, grid.sigmas,
                          [&](const at::Tensor& x, double s, int64_t step) {
                            EXPECT_TRUE(at::allclose(x, (1 - s) * data + s * noise, 1e-5, 1e-5)) << step;
                            return noise - data;
                          });
  EXPECT_TRUE(at::allclose(out, data, 1e-5, 1e-5));
}

TEST(SampleUniPc, NamesABadSamplerAndOrder) {
  EXPECT_THROW(sampling_plan("heun", 4, 5.0), std::invalid_argument);
  EXPECT_THROW(sample_unipc(at::ones({1}), {1.0, 0.0}, {}, {}, 0), std::invalid_argument);
  const auto euler = sampling_plan("euler", 4, 1.0);
  EXPECT_EQ(euler.timesteps, (std::vector<double>{1000, 750, 500, 250}));
}

// Wan 2.1's own FlowUniPCMultistepScheduler (scripts/wan_fixtures.py) sampling the field
// v(x, t) = sin(x) / 2 + x (t / 1000)^2 - 0.3: the same grid, integer timesteps, every step's
// sample and the result, over step counts 1 to 50, shifts 3 to 8 and orders 2 and 3.
TEST(SampleUniPc, MatchesWansOfficialSchedulerStepByStep) {
  const auto file = SafetensorsFile::open(std::string(ASTRAEA_WAN_FIXTURES) + "/unipc.safetensors");
  auto tensor = [&](const std::string& name) {
    const auto& t = file.at(name);
    return at::from_blob(const_cast<std::byte*>(t.data), t.shape, at::kFloat).clone();
  };
  int cases = 0;
  for (const auto& [steps, shift, order] : std::vector<std::tuple<int, double, int>>{
           {1, 5.0, 2}, {2, 5.0, 2}, {5, 5.0, 2}, {12, 3.0, 2}, {50, 5.0, 2}, {9, 8.0, 3}}) {
    char name[64];
    std::snprintf(name, sizeof name, "s%d_shift%g_order%d", steps, shift, order);
    SCOPED_TRACE(name);
    const std::string c = name;
    const auto grid = unipc_grid(steps, shift);
    const auto sigmas = tensor(c + ".sigmas"), timesteps = tensor(c + ".timesteps");
    ASSERT_EQ(grid.sigmas.size(), static_cast<size_t>(steps + 1));
    for (int i = 0; i <= steps; ++i)
      EXPECT_EQ(static_cast<float>(grid.sigmas[i]), sigmas[i].item<float>()) << i;
    for (int i = 0; i < steps; ++i) EXPECT_EQ(grid.timesteps[i], timesteps[i].item<float>()) << i;
    const auto noise = tensor(c + ".noise"), inputs = tensor(c + ".inputs");
    auto out = sample_unipc(
        noise, grid.sigmas,
        [&](const at::Tensor& x, double, int64_t step) {
          const auto expected = inputs[step].view(x.sizes());
          EXPECT_LT((x - expected).abs().max().item<float>(), 1e-5 * (1 + expected.abs().max().item<float>()))
              << "step " << step;
          const double t = grid.timesteps[step];
          return at::sin(x) / 2 + x * (t / 1000.0) * (t / 1000.0) - 0.3;
        },
        {}, order);
    const auto expected = tensor(c + ".out");
    EXPECT_LT((out - expected).abs().max().item<float>(), 1e-5 * (1 + expected.abs().max().item<float>()));
    ++cases;
  }
  EXPECT_EQ(cases, 6);
}

TEST(Guidance, ExtrapolatesFromUncondTowardCond) {
  auto g = classifier_free_guidance(at::full({1}, 3.0), at::full({1}, 1.0), 5.0);
  EXPECT_FLOAT_EQ(g.item<float>(), 11.0f);
}

}  // namespace
}  // namespace astraea
