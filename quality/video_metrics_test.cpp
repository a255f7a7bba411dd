// Fidelity and VBench-proxy metrics on synthetic videos with known answers.
#include "quality/video_metrics.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/field_error.h"
#include "io/video_io.h"
#include "model/torch_compat.h"
#include "quality/metric.h"

namespace astraea::quality {
namespace {

at::Tensor random_video(int64_t f, int64_t h, int64_t w, uint64_t seed, double lo = 0.2, double hi = 0.8) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::rand({f, h, w, 3}, gen) * (hi - lo) + lo;
}

// A smooth texture (sums of sines), sampled with an offset, so that shifts are sub-pixel exact.
at::Tensor texture_frame(int64_t h, int64_t w, double dx, double dy) {
  auto y = at::arange(h, at::kDouble).unsqueeze(1).expand({h, w}) - dy;
  auto x = at::arange(w, at::kDouble).unsqueeze(0).expand({h, w}) - dx;
  auto v = 0.5 + 0.2 * at::sin(x * 0.41 + y * 0.13) + 0.15 * at::cos(y * 0.37 - x * 0.19) + 0.1 * at::sin((x + y) * 0.23);
  return v.unsqueeze(-1).expand({h, w, 3}).to(at::kFloat).contiguous();
}

at::Tensor moving_texture(int64_t frames, int64_t h, int64_t w, double vx, double vy) {
  std::vector<at::Tensor> f;
  for (int64_t i = 0; i < frames; ++i) f.push_back(texture_frame(h, w, vx * i, vy * i));
  return at::stack(f);
}

TEST(Fidelity, IdenticalVideosGiveInfinitePsnrNeverNan) {
  const auto v = random_video(4, 16, 24, 1);
  const auto r = fidelity(v, v.clone());
  EXPECT_TRUE(std::isinf(r.psnr) && r.psnr > 0);
  EXPECT_TRUE(std::isinf(r.psnr_video) && r.psnr_video > 0);
  for (double p : r.psnr_per_frame) EXPECT_TRUE(std::isinf(p) && p > 0);
  EXPECT_EQ(r.mse, 0.0);
  EXPECT_NEAR(r.ssim, 1.0, 1e-12);
}

TEST(Fidelity, NoiseLowersPsnrByTheExpectedAmount) {
  const auto v = random_video(6, 32, 32, 2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto noise = at::randn(v.sizes(), gen);
  const auto r05 = fidelity(v + 0.05 * noise, v), r10 = fidelity(v + 0.1 * noise, v);
  // MSE = sigma^2: PSNR = -20 log10(sigma) = 26.02 dB and 20.00 dB; doubling sigma costs 6.02 dB.
  EXPECT_NEAR(r05.psnr_video, 26.02, 0.1);
  EXPECT_NEAR(r10.psnr_video, 20.00, 0.1);
  EXPECT_NEAR(r05.psnr - r10.psnr, 20 * std::log10(2.0), 1e-6);  // the same noise, scaled: exact
  EXPECT_EQ(r05.psnr_per_frame.size(), 6u);
  EXPECT_GT(r05.ssim, r10.ssim);
  EXPECT_LT(r10.ssim, 1.0);
}

TEST(Fidelity, SsimOfFlatFramesMatchesTheFormula) {
  // Constant frames have no variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1).
  const auto a = at::full({2, 16, 16, 3}, 0.2, at::kDouble), b = at::full({2, 16, 16, 3}, 0.6, at::kDouble);
  const double c1 = 1e-4;
  EXPECT_NEAR(fidelity(a, b).ssim, (2 * 0.2 * 0.6 + c1) / (0.04 + 0.36 + c1), 1e-9);
  EXPECT_NEAR(fidelity(a, b).psnr_video, -10 * std::log10(0.16), 1e-9);
}

TEST(Fidelity, RejectsMismatchedOrTinyVideos) {
  EXPECT_THROW(fidelity(random_video(2, 16, 16, 1), random_video(3, 16, 16, 1)), std::invalid_argument);
  EXPECT_THROW(fidelity(random_video(2, 8, 16, 1), random_video(2, 8, 16, 1)), std::invalid_argument);
  EXPECT_THROW(fidelity(at::rand({2, 16, 16}), at::rand({2, 16, 16})), std::invalid_argument);
}

TEST(Fidelity, TheGpuAgreesWithTheCpu) {
  if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const auto v = random_video(3, 32, 48, 4), ref = random_video(3, 32, 48, 5);
  const auto cpu = fidelity(v, ref), gpu = fidelity(v.to(at::kCUDA), ref.to(at::kCUDA));
  EXPECT_NEAR(cpu.psnr, gpu.psnr, 1e-9);
  EXPECT_NEAR(cpu.ssim, gpu.ssim, 1e-9);
}

TEST(OpticalFlow, KnownShiftsGiveTheirDirectionAndMagnitude) {
  if (!has_optical_flow()) GTEST_SKIP() << "built without OpenCV";
  for (auto [dx, dy] : std::vector<std::pair<double, double>>{{2, 0}, {0, -3}, {1.5, 1.5}}) {
    const auto a = texture_frame(64, 64, 0, 0), b = texture_frame(64, 64, dx, dy);
    auto gray = [](const at::Tensor& t) {
      const auto u8 = t.select(2, 0).mul(255).round().to(at::kByte).contiguous();
      return std::vector<uint8_t>(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + u8.numel());
    };
    const auto flow = optical_flow(gray(a), gray(b), 64, 64);
    // The median over the interior, away from the borders where the texture enters or leaves.
    std::vector<float> u, v;
    for (int y = 12; y < 52; ++y)
      for (int x = 12; x < 52; ++x) {
        u.push_back(flow[(y * 64 + x) * 2]);
        v.push_back(flow[(y * 64 + x) * 2 + 1]);
      }
    std::nth_element(u.begin(), u.begin() + u.size() / 2, u.end());
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    EXPECT_NEAR(u[u.size() / 2], dx, 0.3) << "shift " << dx << "," << dy;
    EXPECT_NEAR(v[v.size() / 2], dy, 0.3) << "shift " << dx << "," << dy;
  }
}

TEST(VBenchProxy, AStaticClipHasNoDynamicDegreeAndFlickerOfOne) {
  if (!has_optical_flow()) GTEST_SKIP() << "built without OpenCV";
  const auto still = moving_texture(16, 64, 64, 0, 0);
  const auto r = vbench_proxy(still, 8.0);
  EXPECT_DOUBLE_EQ(r.temporal_flickering, 1.0);
  EXPECT_TRUE(r.static_video);
  EXPECT_FALSE(r.dynamic);
  // The interpolated frames truncate to 8 bits as VBench's AMT does: the flow of a still clip is
  // near zero but not zero, so a few values land a hair under the pixel's and lose one level.
  EXPECT_GT(r.motion_smoothness, 0.9999);
  EXPECT_LE(r.motion_smoothness, 1.0);
  EXPECT_FALSE(r.semantic_score.has_value());
  // Quality: flicker and smoothness at their normalised maximum (above 0.9975, kept at 1), dynamic
  // degree 0 (half weight): (1 + 1 + 0) / 2.5.
  EXPECT_DOUBLE_EQ(r.quality_score, 2.0 / 2.5);
  EXPECT_DOUBLE_EQ(r.total, r.quality_score);
}

TEST(VBenchProxy, MotionIsDynamicAndNotStatic) {
  if (!has_optical_flow()) GTEST_SKIP() << "built without OpenCV";
  // 3 pixels a frame at 8 fps on 64 pixels: VBench's threshold is 6 * 64 / 256 = 1.5 pixels.
  const auto moving = moving_texture(16, 64, 64, 3, 0);
  const auto r = vbench_proxy(moving, 8.0);
  EXPECT_TRUE(r.dynamic);
  EXPECT_FALSE(r.static_video);
  EXPECT_LT(r.temporal_flickering, 1.0);
  ASSERT_EQ(r.flow_scores.size(), 15u);
  for (double s : r.flow_scores) EXPECT_GT(s, 1.5);
  // At 16 fps dynamic degree samples every other frame: 8 frames, 7 pairs.
  EXPECT_EQ(vbench_proxy(moving, 16.0).flow_scores.size(), 7u);
  // Slow motion, half a pixel a frame, is not dynamic.
  EXPECT_FALSE(vbench_proxy(moving_texture(16, 64, 64, 0.5, 0), 8.0).dynamic);
}

TEST(VBenchProxy, TheDynamicThresholdHasNoFrameRateFactorAsInVBenchsHead) {
  if (!has_optical_flow()) GTEST_SKIP() << "built without OpenCV";
  // 2 pixels a frame at 4 fps on 64 pixels: above VBench's 1.5-pixel threshold. A factor of
  // max(1, 8 / fps) (VBench for ten days in July 2024) would make it 3 pixels and the clip static.
  const auto r = vbench_proxy(moving_texture(16, 64, 64, 2, 0), 4.0);
  ASSERT_EQ(r.flow_scores.size(), 15u);  // round(4 / 8) is 0: every frame is sampled
  for (double s : r.flow_scores) {
    EXPECT_GT(s, 1.5);
    EXPECT_LT(s, 3.0);
  }
  EXPECT_TRUE(r.dynamic);
}

TEST(VBenchProxy, ADroppedFrameLowersMotionSmoothness) {
  if (!has_optical_flow()) GTEST_SKIP() << "built without OpenCV";
  const auto smooth = moving_texture(10, 64, 64, 1.5, 0.5);
  std::vector<at::Tensor> frames;
  for (int64_t i = 0; i < 10; ++i)
    if (i != 4) frames.push_back(smooth[i]);
  frames.push_back(texture_frame(64, 64, 1.5 * 10, 0.5 * 10));
  const auto dropped = at::stack(frames);
  const double s_smooth = vbench_proxy(smooth, 8.0).motion_smoothness;
  const double s_dropped = vbench_proxy(dropped, 8.0).motion_smoothness;
  EXPECT_GT(s_smooth, 0.99);
  EXPECT_LT(s_dropped, s_smooth - 0.002) << s_smooth << " vs " << s_dropped;
}

TEST(VBenchProxy, RejectsTooShortOrTooSmallVideos) {
  EXPECT_THROW(vbench_proxy(random_video(2, 32, 32, 1), 8.0), std::invalid_argument);
  EXPECT_THROW(vbench_proxy(random_video(4, 8, 32, 1), 8.0), std::invalid_argument);
  EXPECT_THROW(vbench_proxy(random_video(4, 32, 32, 1), 0.0), std::invalid_argument);
}

TEST(MetricRegistry, ParsesNamesListsAndBothAndNamesTheField) {
  const auto psnr = parse_metrics("psnr");
  ASSERT_EQ(psnr.size(), 1u);
  EXPECT_EQ(psnr[0]->name, "psnr");
  EXPECT_TRUE(needs_reference(psnr));
  EXPECT_FALSE(judges_prompt(psnr));
  const auto both = parse_metrics("both");
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[1]->name, "vbench-proxy");
  EXPECT_EQ(parse_metrics("vbench-proxy,psnr")[1], both[0]);
  EXPECT_EQ(without_reference(both), MetricList{both[1]});
  for (const char* bad : {"lpips", "psnr,", "psnr,psnr", ""}) {
    try {
      parse_metrics(bad, "fitness");
      FAIL() << bad;
    } catch (const FieldError& e) {
      EXPECT_EQ(e.fields(), std::vector<std::string>{"fitness"}) << bad;
      EXPECT_NE(e.render("--").find("--fitness '"), std::string::npos) << e.render("--");
    }
  }
}

TEST(MetricRegistry, ScoresAreTheMetricsMeasurementsInOrderWithCappedHeadlines) {
  const auto a = random_video(4, 24, 24, 1), b = random_video(4, 24, 24, 2);
  const auto f = fidelity(a, b);
  MetricInput in;
  in.video = &a;
  EXPECT_THROW(score(parse_metrics("psnr"), in), std::invalid_argument);  // no reference
  in.reference = &b;
  const auto s = score(parse_metrics("psnr"), in);
  const auto all = s.all();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].name, "psnr");
  EXPECT_EQ(all[0].unit, "dB");
  EXPECT_DOUBLE_EQ(all[0].value, f.psnr);
  EXPECT_DOUBLE_EQ(*s.value("ssim"), f.ssim);
  EXPECT_DOUBLE_EQ(*s.headline(metric("psnr")), std::min(60.0, f.psnr));
  EXPECT_FALSE(s.headline(metric("vbench-proxy")).has_value());
  in.reference = &a;  // identical: +inf PSNR, capped at 60 as a headline
  const auto same = score(parse_metrics("psnr"), in);
  EXPECT_TRUE(std::isinf(*same.value("psnr")));
  EXPECT_EQ(*same.headline(metric("psnr")), 60.0);
}

TEST(MetricRegistry, CombineIsTheHeadlineAloneOrTheMeanOfScaledHeadlines) {
  EXPECT_EQ(combine(parse_metrics("psnr"), {{"psnr", 31.0}}), 31.0);
  EXPECT_DOUBLE_EQ(combine(parse_metrics("both"), {{"psnr", 32.0}, {"vbench-proxy", 0.8}}),
                   0.5 * (32.0 / 40 + 0.8));
  EXPECT_THROW(combine(parse_metrics("both"), {{"psnr", 32.0}}), std::invalid_argument);
}

// Parity with VBench's own code (scripts/vbench_fixtures.py ran its temporal_flickering.cal_score,
// cv2.VideoCapture's frames and its constants on the MP4s in tests/fixtures/vbench/, and its static
// filter's rule on flow-score lists): our decode as cv2 does it gives the same frames, our
// flickering the same number, our static rule the same verdicts, our bounds VBench's.
TEST(VBenchProxy, MatchesVBenchsOwnCodeOnTheFixtureVideos) {
  std::ifstream in(std::string(ASTRAEA_VBENCH_FIXTURES) + "/expected.json");
  ASSERT_TRUE(in) << "tests/fixtures/vbench/expected.json is missing";
  const auto expected = nlohmann::json::parse(in);
  const auto& n = expected["normalisation"];
  for (const auto& [name, bound] :
       std::vector<std::pair<std::string, VBenchBound>>{{"temporal flickering", kFlickeringBound},
                                                        {"motion smoothness", kSmoothnessBound},
                                                        {"dynamic degree", kDynamicBound}}) {
    EXPECT_EQ(n[name]["min"].get<double>(), bound.min) << name;
    EXPECT_EQ(n[name]["max"].get<double>(), bound.max) << name;
    EXPECT_EQ(n[name]["weight"].get<double>(), bound.weight) << name;
  }
  // VBench's static filter rule on flow-score lists around its thresholds: the same verdicts.
  ASSERT_GE(expected["static_filter"].size(), 20u);
  int static_ones = 0;
  for (const auto& c : expected["static_filter"]) {
    const bool want = c["static"].get<bool>();
    static_ones += want;
    EXPECT_EQ(vbench_static(c["scores"].get<std::vector<double>>(), c["frames"], c["height"], c["width"]),
              want)
        << c.dump();
  }
  EXPECT_GT(static_ones, 0);
  EXPECT_LT(static_ones, static_cast<int>(expected["static_filter"].size()));
  if (!has_optical_flow()) GTEST_SKIP() << "built without OpenCV (the flickering check needs the full proxy)";
  ASSERT_GE(expected["videos"].size(), 3u);
  for (const auto& [file, want] : expected["videos"].items()) {
    Video v;
    try {
      v = read_video(std::string(ASTRAEA_VBENCH_FIXTURES) + "/" + file, VideoDecode::kOpenCv);
    } catch (const VideoError& e) {
      GTEST_SKIP() << "no MP4 decoding in this build: " << e.what();
    }
    ASSERT_EQ(v.frames, want["frames"].get<int64_t>()) << file;
    ASSERT_EQ(v.height, want["height"].get<int64_t>()) << file;
    ASSERT_EQ(v.width, want["width"].get<int64_t>()) << file;
    const auto video = at::from_blob(v.rgb.data(), {v.frames, v.height, v.width, 3}, at::kFloat).clone();
    for (int c = 0; c < 3; ++c) {
      const double mean = video.select(3, c).to(at::kDouble).mul(255).round().mean().item<double>();
      EXPECT_NEAR(mean, want["mean_rgb"][c].get<double>(), 1e-9) << file << " channel " << c;
    }
    // VBench averages each pair's absolute differences in float32 (np.mean of a float32 array); we
    // sum in double: they part at the eighth digit (1.6e-8 on the noise video).
    EXPECT_NEAR(vbench_proxy(video, 16.0).temporal_flickering, want["temporal_flickering"].get<double>(),
                1e-7)
        << file;
  }
}

}  // namespace
}  // namespace astraea::quality
