#include "model/sampler.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

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

TEST(Guidance, ExtrapolatesFromUncondTowardCond) {
  auto g = classifier_free_guidance(at::full({1}, 3.0), at::full({1}, 1.0), 5.0);
  EXPECT_FLOAT_EQ(g.item<float>(), 11.0f);
}

}  // namespace
}  // namespace astraea
