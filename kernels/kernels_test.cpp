// CPU references against hand-computed values (always run), and every kernel against its CPU
// reference on random inputs (one table-driven test; skips without a CUDA device).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "astraea/config.h"
#include "kernels/attention_merge.cuh"
#include "kernels/residual_layer_norm.cuh"
#include "kernels/rms_norm_rope.cuh"
#include "kernels/token_scatter.cuh"
#include "kernels/token_select.cuh"
#include "kernels/types.h"

#if ASTRAEA_HAS_CUDA_KERNELS
#include "kernels/cuda_check.h"
#endif

namespace astraea::kernels {
namespace {

float float_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/// A correctly rounded bf16 is within half a unit in the last place, 2^-9 of the value's binade.
void expect_bf16_near(bf16 got, double expected, const std::string& where) {
  EXPECT_NEAR(bf16_to_float(got), expected, std::ldexp(std::fabs(expected), -8) + 1e-30) << where;
}

std::vector<bf16> to_bf16(const std::vector<float>& values) {
  std::vector<bf16> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = float_to_bf16(values[i]);
  return out;
}

std::vector<float> to_float(const std::vector<bf16>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = bf16_to_float(values[i]);
  return out;
}

template <typename Fn>
void expect_invalid_argument(Fn&& fn, const std::string& names) {
  try {
    fn();
    ADD_FAILURE() << "expected std::invalid_argument naming " << names;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(names), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------------------------------------
// bf16 conversion

TEST(Bf16, KnownValues) {
  EXPECT_EQ(float_to_bf16(1.0f).bits, 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.0f).bits, 0xC000);
  EXPECT_EQ(float_to_bf16(0.0f).bits, 0x0000);
  EXPECT_EQ(float_to_bf16(-0.0f).bits, 0x8000);
  EXPECT_EQ(bf16_to_float(bf16{0x3F80}), 1.0f);
  EXPECT_EQ(bf16_to_float(bf16{0x4049}), 3.140625f);  // pi, the nearest bf16
  EXPECT_EQ(float_to_bf16(3.14159265f).bits, 0x4049);
}

TEST(Bf16, RoundsToNearestTiesToEven) {
  // 0x3F808000 lies exactly between 0x3F80 and 0x3F81: the even one wins. Likewise upwards to 0x3F82.
  EXPECT_EQ(float_to_bf16(float_from_bits(0x3F808000u)).bits, 0x3F80);
  EXPECT_EQ(float_to_bf16(float_from_bits(0x3F818000u)).bits, 0x3F82);
  EXPECT_EQ(float_to_bf16(float_from_bits(0xBF818000u)).bits, 0xBF82);
  EXPECT_EQ(float_to_bf16(float_from_bits(0x3F808001u)).bits, 0x3F81);       // just above the tie
  EXPECT_EQ(float_to_bf16(float_from_bits(0x3F807FFFu)).bits, 0x3F80);       // just below it
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()).bits, 0x7F80);  // rounds past the top: inf
}

TEST(Bf16, InfinityAndNanSurvive) {
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()).bits, 0x7F80);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()).bits, 0xFF80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // Payload in the low 16 bits only: plain truncation (or rounding) would turn these into inf.
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(float_from_bits(0x7F800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(float_from_bits(0xFF800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(float_from_bits(0x7FFFFFFFu)))));
}

TEST(Bf16, EveryNonNanValueRoundTrips) {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const bf16 value{static_cast<uint16_t>(bits)};
    if (std::isnan(bf16_to_float(value))) continue;
    ASSERT_EQ(float_to_bf16(bf16_to_float(value)).bits, bits);
  }
}

// ------------------------------------------------------------------------------------------------
// residual_layer_norm_cpu

TEST(ResidualLayerNormCpu, FusedMatchesHandComputation) {
  // x = [1 2 3 4] + y [1 1 1 1] * gate [1 0 2 -1] = [2 2 5 3]
  // mean 3, deviations [-1 -1 2 0], biased variance 6 / 4 = 1.5; + eps 0.5 = 2: rstd = 1/sqrt(2)
  // * mul [1 2 1 1] + add [0 0 0.5 0] = [-0.70710678, -1.41421356, 1.91421356, 0]
  // bf16 keeps 7 fraction bits: 0.70710678 = 1.0110101|00000 x 2^-1 -> 0.70703125, so 1.41421356
  // -> 1.4140625, and 1.91421356 = 1 + 117.02 / 128 -> 1 + 117 / 128 = 1.9140625.
  std::vector<float> x = {1, 2, 3, 4};
  const std::vector<bf16> y = to_bf16({1, 1, 1, 1});
  const std::vector<float> gate = {1, 0, 2, -1}, mul = {1, 2, 1, 1}, add = {0, 0, 0.5f, 0};
  std::vector<bf16> out(4);
  residual_layer_norm_cpu(x.data(), y.data(), gate.data(), mul.data(), add.data(), out.data(), 1, 4, 0.5f, nullptr);
  EXPECT_EQ(x, (std::vector<float>{2, 2, 5, 3}));
  EXPECT_EQ(to_float(out), (std::vector<float>{-0.70703125f, -1.4140625f, 1.9140625f, 0.0f}));
}

TEST(ResidualLayerNormCpu, NullArguments) {
  const std::vector<bf16> y = to_bf16({0.5f, -1, 2, 0.25f, 0.5f, -1, 2, 0.25f});
  {  // gate null: gate = 1; out null: the residual update only.
    std::vector<float> x = {1, 2, 3, 4, 11, 12, 13, 14};
    residual_layer_norm_cpu(x.data(), y.data(), nullptr, nullptr, nullptr, nullptr, 2, 4, 1e-6f, nullptr);
    EXPECT_EQ(x, (std::vector<float>{1.5f, 1, 5, 4.25f, 11.5f, 11, 15, 14.25f}));
  }
  {  // y null: x stays; plain LayerNorm (mul, add null). Row 2 is row 1 + 10: the same output.
    // mean 2.5, variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25; + eps 0.75 = 2: [-1.5 -0.5 0.5 1.5] / sqrt(2)
    std::vector<float> x = {1, 2, 3, 4, 11, 12, 13, 14};
    const std::vector<float> x_before = x;
    std::vector<bf16> out(8);
    residual_layer_norm_cpu(x.data(), nullptr, nullptr, nullptr, nullptr, out.data(), 2, 4, 0.75f, nullptr);
    EXPECT_EQ(x, x_before);
    const double r = 1.0 / std::sqrt(2.0);
    const double expected[4] = {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r};
    for (int i = 0; i < 8; ++i) expect_bf16_near(out[i], expected[i % 4], "out[" + std::to_string(i) + "]");
  }
  {  // y and out null: nothing to do.
    std::vector<float> x = {1, 2, 3, 4};
    residual_layer_norm_cpu(x.data(), nullptr, nullptr, nullptr, nullptr, nullptr, 1, 4, 1e-6f, nullptr);
    EXPECT_EQ(x, (std::vector<float>{1, 2, 3, 4}));
  }
}

TEST(ResidualLayerNormCpu, RejectsBadArguments) {
  float x[4] = {};
  bf16 out[4] = {};
  expect_invalid_argument(
      [&] { residual_layer_norm_cpu(x, nullptr, nullptr, nullptr, nullptr, out, -1, 4, 1e-6f, nullptr); }, "rows");
  expect_invalid_argument(
      [&] { residual_layer_norm_cpu(x, nullptr, nullptr, nullptr, nullptr, out, 1, -4, 1e-6f, nullptr); }, "dim");
  expect_invalid_argument(
      [&] { residual_layer_norm_cpu(x, nullptr, nullptr, nullptr, nullptr, out, 1, 4, NAN, nullptr); }, "eps");
  expect_invalid_argument(
      [&] { residual_layer_norm_cpu(nullptr, nullptr, nullptr, nullptr, nullptr, out, 1, 4, 1e-6f, nullptr); }, "x");
}

TEST(GatherResidualLayerNormCpu, GathersUpdatesSketchesAndNormalises) {
  // Source rows (bf16): row 0 [9 9 9 9], row 1 [1 2 3 4], row 2 [0 0 0 1]. Rows read: idx [1, 2].
  // Row 0 of the output: [1 2 3 4] + y [1 1 1 1] * gate [1 0 2 -1] = h [2 2 5 3], which normalises
  // (eps 0.5, mul [1 2 1 1], add [0 0 0.5 0]) as in ResidualLayerNormCpu.FusedMatchesHandComputation.
  // Row 1: [0 0 0 1] + [0 0 0 0] = h [0 0 0 1]: mean 0.25, variance (3 * 0.0625 + 0.5625) / 4 = 0.1875;
  // + 0.5 = 0.6875.
  // Sketch rows proj [1 1 1 1] and [1 0 -1 0]: row 0 gives 12 and -3; row 1 gives 1 and 0.
  const std::vector<bf16> src = to_bf16({9, 9, 9, 9, 1, 2, 3, 4, 0, 0, 0, 1});
  const std::vector<bf16> y = to_bf16({1, 1, 1, 1, 0, 0, 0, 0});
  const std::vector<float> gate = {1, 0, 2, -1}, mul = {1, 2, 1, 1}, add = {0, 0, 0.5f, 0};
  const std::vector<bf16> proj = to_bf16({1, 1, 1, 1, 1, 0, -1, 0});
  const int64_t idx[2] = {1, 2};
  std::vector<float> h(8, NAN), sketch(4, NAN);
  std::vector<bf16> out(8);
  GatherLayerNormArgs a;
  a.src = src.data();
  a.idx = idx;
  a.y = y.data();
  a.gate = gate.data();
  a.proj = proj.data();
  a.sketch_dim = 2;
  a.sketch = sketch.data();
  a.mul = mul.data();
  a.add = add.data();
  a.h = h.data();
  a.out = out.data();
  a.rows = 2;
  a.dim = 4;
  a.eps = 0.5f;
  gather_residual_layer_norm_cpu(a, nullptr);
  EXPECT_EQ(h, (std::vector<float>{2, 2, 5, 3, 0, 0, 0, 1}));
  EXPECT_EQ(sketch, (std::vector<float>{12, -3, 1, 0}));
  EXPECT_EQ(to_float(std::vector<bf16>(out.begin(), out.begin() + 4)),
            (std::vector<float>{-0.70703125f, -1.4140625f, 1.9140625f, 0.0f}));
  const double r = 1.0 / std::sqrt(0.6875);
  const double expected[4] = {-0.25 * r, -0.25 * r * 2, -0.25 * r + 0.5, 0.75 * r};
  for (int c = 0; c < 4; ++c) expect_bf16_near(out[4 + c], expected[c], "out row 1 col " + std::to_string(c));

  // Without idx, y, h and out: the sketch of rows 0..2 alone.
  GatherLayerNormArgs s;
  s.src = src.data();
  s.proj = proj.data();
  s.sketch_dim = 2;
  std::vector<float> all(6, NAN);
  s.sketch = all.data();
  s.rows = 3;
  s.dim = 4;
  gather_residual_layer_norm_cpu(s, nullptr);
  EXPECT_EQ(all, (std::vector<float>{36, 0, 10, -2, 1, 0}));
}

TEST(GatherResidualLayerNormCpu, RejectsBadArguments) {
  const std::vector<bf16> src = to_bf16({1, 2, 3, 4});
  const std::vector<bf16> proj = to_bf16({1, 1, 1, 1});
  float sketch[1];
  const auto call = [&](auto&& change, const std::string& names) {
    GatherLayerNormArgs a;
    a.src = src.data();
    a.proj = proj.data();
    a.sketch = sketch;
    a.sketch_dim = 1;
    a.rows = 1;
    a.dim = 4;
    change(a);
    expect_invalid_argument([&] { gather_residual_layer_norm_cpu(a, nullptr); }, names);
  };
  call([](GatherLayerNormArgs& a) { a.rows = -1; }, "rows");
  call([](GatherLayerNormArgs& a) { a.dim = -1; }, "dim");
  call([](GatherLayerNormArgs& a) { a.eps = NAN; }, "eps");
  call([](GatherLayerNormArgs& a) { a.sketch_dim = kMaxSketchDim + 1; }, "sketch_dim");
  call([](GatherLayerNormArgs& a) { a.sketch_dim = 0; }, "sketch_dim");
  call([](GatherLayerNormArgs& a) { a.src = nullptr; }, "src");
  call([](GatherLayerNormArgs& a) { a.proj = nullptr; }, "proj");
  const int64_t negative[1] = {-1};
  call([&](GatherLayerNormArgs& a) { a.idx = negative; }, "idx");
}

// ------------------------------------------------------------------------------------------------
// rms_norm_rope_cpu and wan_rope_inv_freq

TEST(RmsNormRopeCpu, MatchesHandComputationOnGrid) {
  // One head of head_dim 6 (pairs: 1 frame, 1 row, 1 column), a 2 x 2 x 2 grid, rows 8 apart in src
  // with two decoys between them. Token t holds (t + 1) * [2 0 1 -1 0 2]: mean(x^2) = (t + 1)^2 * 10 / 6.
  constexpr int64_t kTokens = 8, kDim = 6, kStride = 8;
  const double base[kDim] = {2, 0, 1, -1, 0, 2};
  const double weight_d[kDim] = {1, 1, 2, 1, 1, 0.5};
  const float weight[kDim] = {1, 1, 2, 1, 1, 0.5f};
  const float inv_freq[3] = {1.0f, 0.5f, 0.25f};
  const float eps = 1.0f / 3.0f;
  std::vector<bf16> src(kTokens * kStride, float_to_bf16(1000.0f));  // decoys would dominate the RMS
  for (int64_t t = 0; t < kTokens; ++t)
    for (int64_t c = 0; c < kDim; ++c) src[t * kStride + c] = float_to_bf16(static_cast<float>((t + 1) * base[c]));
  // Grid positions by hand, t = (f * 2 + h) * 2 + w.
  const int position[kTokens][3] = {{0, 0, 0}, {0, 0, 1}, {0, 1, 0}, {0, 1, 1},
                                    {1, 0, 0}, {1, 0, 1}, {1, 1, 0}, {1, 1, 1}};
  std::vector<bf16> out(kTokens * kDim);
  rms_norm_rope_cpu(src.data(), kStride, weight, inv_freq, nullptr, 2, 2, 2, 1, kDim, eps, out.data(), kTokens, nullptr);
  for (int64_t t = 0; t < kTokens; ++t) {
    const double rstd = 1.0 / std::sqrt((t + 1) * (t + 1) * 10.0 / 6.0 + eps);
    for (int j = 0; j < 3; ++j) {  // pair j rotates with axis j here: one pair per axis
      const double angle = position[t][j] * static_cast<double>(inv_freq[j]);
      const double v0 = (t + 1) * base[2 * j] * rstd * weight_d[2 * j];
      const double v1 = (t + 1) * base[2 * j + 1] * rstd * weight_d[2 * j + 1];
      const std::string where = "token " + std::to_string(t) + " pair " + std::to_string(j);
      expect_bf16_near(out[t * kDim + 2 * j], v0 * std::cos(angle) - v1 * std::sin(angle), where);
      expect_bf16_near(out[t * kDim + 2 * j + 1], v0 * std::sin(angle) + v1 * std::cos(angle), where);
    }
  }
}

TEST(RmsNormRopeCpu, NoRotationWithoutInvFreq) {
  // Two heads of 2, x = [3 4 0 0]: mean(x^2) = 25 / 4, eps 0 -> rstd 0.4; weight [1 0.5 1 1]
  // -> [1.2 0.8 0 0]. In bf16: 1.2 = 1.0011001|1001... -> 1.0011010 = 1.203125;
  // 0.8 = 1.1001100|1100... x 2^-1 -> 1.1001101 x 2^-1 = 0.80078125. The grid arguments are ignored.
  const std::vector<bf16> src = to_bf16({3, 4, 0, 0});
  const float weight[4] = {1, 0.5f, 1, 1};
  std::vector<bf16> out(4);
  rms_norm_rope_cpu(src.data(), 4, weight, nullptr, nullptr, 0, 0, 0, 2, 2, 0.0f, out.data(), 1, nullptr);
  EXPECT_EQ(to_float(out), (std::vector<float>{1.203125f, 0.80078125f, 0.0f, 0.0f}));
}

TEST(RmsNormRopeCpu, RejectsBadArguments) {
  const std::vector<bf16> src(64, float_to_bf16(1.0f));
  const std::vector<float> weight(12, 1.0f), inv_freq(6, 1.0f);
  std::vector<bf16> out(64);
  const auto call = [&](int64_t stride, const float* w, int64_t grid_w, int64_t heads, int64_t head_dim,
                        int64_t tokens) {
    rms_norm_rope_cpu(src.data(), stride, w, inv_freq.data(), nullptr, 1, 1, grid_w, heads, head_dim, 1e-6f, out.data(), tokens,
                      nullptr);
  };
  expect_invalid_argument([&] { call(12, weight.data(), 2, 2, 5, 2); }, "head_dim");
  expect_invalid_argument([&] { call(12, weight.data(), 3, 1, 12, 2); }, "tokens");
  expect_invalid_argument([&] { call(8, weight.data(), 2, 1, 12, 2); }, "src_row_stride");
  expect_invalid_argument([&] { call(12, nullptr, 2, 1, 12, 2); }, "weight");
  expect_invalid_argument([&] { call(12, weight.data(), 0, 1, 12, 0); }, "grid");
}

TEST(RmsNormRopeCpu, GatheredRowsRotateByTheirGridPositions) {
  // Rows 7 and 2 of a 2 x 2 x 3 grid, gathered, give what rows 7 and 2 of the full grid give.
  constexpr int64_t kHeadDim = 12, kTokens = 12;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<bf16> src(kTokens * kHeadDim);
  for (auto& v : src) v = float_to_bf16(normal(rng));
  std::vector<float> weight(kHeadDim, 1.0f), inv_freq(kHeadDim / 2);
  wan_rope_inv_freq(kHeadDim, 10000.0, inv_freq.data());
  std::vector<bf16> full(kTokens * kHeadDim);
  rms_norm_rope_cpu(src.data(), kHeadDim, weight.data(), inv_freq.data(), nullptr, 2, 2, 3, 1, kHeadDim, 1e-6f,
                    full.data(), kTokens, nullptr);
  const std::vector<int64_t> positions{7, 2};
  std::vector<bf16> rows(2 * kHeadDim), out(2 * kHeadDim);
  std::copy_n(src.begin() + 7 * kHeadDim, kHeadDim, rows.begin());
  std::copy_n(src.begin() + 2 * kHeadDim, kHeadDim, rows.begin() + kHeadDim);
  rms_norm_rope_cpu(rows.data(), kHeadDim, weight.data(), inv_freq.data(), positions.data(), 2, 2, 3, 1, kHeadDim,
                    1e-6f, out.data(), 2, nullptr);
  for (int64_t c = 0; c < kHeadDim; ++c) {
    EXPECT_EQ(out[c].bits, full[7 * kHeadDim + c].bits) << c;
    EXPECT_EQ(out[kHeadDim + c].bits, full[2 * kHeadDim + c].bits) << c;
  }
  const std::vector<int64_t> outside{12, 0};
  EXPECT_THROW(rms_norm_rope_cpu(rows.data(), kHeadDim, weight.data(), inv_freq.data(), outside.data(), 2, 2, 3, 1,
                                 kHeadDim, 1e-6f, out.data(), 2, nullptr),
               std::invalid_argument);
}

TEST(WanRopeInvFreq, FollowsRopeParamsPerAxis) {
  // head_dim 128: 64 pairs = 22 (frames) + 21 (rows) + 21 (columns); pair k of an axis of n: 10000^(-k / n).
  std::vector<float> inv_freq(64);
  wan_rope_inv_freq(128, 10000.0, inv_freq.data());
  EXPECT_EQ(inv_freq[0], 1.0f);
  EXPECT_FLOAT_EQ(inv_freq[1], std::pow(10000.0, -1.0 / 22));
  EXPECT_FLOAT_EQ(inv_freq[21], std::pow(10000.0, -21.0 / 22));
  EXPECT_EQ(inv_freq[22], 1.0f);
  EXPECT_FLOAT_EQ(inv_freq[23], std::pow(10000.0, -1.0 / 21));
  EXPECT_EQ(inv_freq[43], 1.0f);
  EXPECT_FLOAT_EQ(inv_freq[63], std::pow(10000.0, -20.0 / 21));
  std::vector<float> tiny(3);
  wan_rope_inv_freq(6, 10000.0, tiny.data());
  EXPECT_EQ(tiny, (std::vector<float>{1, 1, 1}));
  expect_invalid_argument([&] { wan_rope_inv_freq(7, 10000.0, tiny.data()); }, "head_dim");
}

// ------------------------------------------------------------------------------------------------
// select_tokens_cpu and select_top_scores_cpu

TEST(SelectTokensCpu, MatchesHandComputationWithTieAtThreshold) {
  // Two sketch columns; new - old per token: (3,4) (0,0) (0,1) (6,8) (0,0) (0,2.5) -> norms 5 0 1 10 0 2.5.
  // w_lse 1, w_stale 1: score = lse * norm + exp(stale)
  //   t0: 1 * 5 + e^0 = 6   t1: 0 + e^2 = 7.389   t2: 2 * 1 + 1 = 3
  //   t3: 0.5 * 10 + 1 = 6  t4: 0 + 1 = 1         t5: 2 * 2.5 + 1 = 6
  // k = 3: t1, then two of the three tied at 6: the lower indices t0 and t3 -> [0 1 3].
  const float lse[6] = {1, 3, 2, 0.5f, 4, 2};
  const float sketch_old[12] = {1, -2, 5, 5, 0, 0, -1, 1, 2, 2, 0.5f, 0};
  const float sketch_new[12] = {4, 2, 5, 5, 0, 1, 5, 9, 2, 2, 0.5f, 2.5f};
  const float stale[6] = {0, 2, 0, 0, 0, 0};
  float score[6];
  int64_t idx[6];
  select_tokens_cpu(lse, sketch_new, sketch_old, 2, stale, 1.0f, 1.0f, 6, 3, score, idx, nullptr, 0, nullptr);
  EXPECT_EQ(std::vector<float>(score, score + 6),
            (std::vector<float>{6, static_cast<float>(std::exp(2.0)), 3, 6, 1, 6}));
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 3), (std::vector<int64_t>{0, 1, 3}));
  // k = 1: the single best; k = 5: everything but the lowest (t4); k = n: every token.
  select_tokens_cpu(lse, sketch_new, sketch_old, 2, stale, 1.0f, 1.0f, 6, 1, score, idx, nullptr, 0, nullptr);
  EXPECT_EQ(idx[0], 1);
  select_tokens_cpu(lse, sketch_new, sketch_old, 2, stale, 1.0f, 1.0f, 6, 5, score, idx, nullptr, 0, nullptr);
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 5), (std::vector<int64_t>{0, 1, 2, 3, 5}));
  select_tokens_cpu(lse, sketch_new, sketch_old, 2, stale, 1.0f, 1.0f, 6, 6, score, idx, nullptr, 0, nullptr);
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 6), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  // Weights: w_lse 0 leaves staleness alone (t1 first, then the rest tied at 1: t0, t2);
  // w_stale -1 subtracts it: 5 - 1, 0 - e^2, 2 - 1, 5 - 1, 0 - 1, 5 - 1 -> t0 t3 t5.
  select_tokens_cpu(lse, sketch_new, sketch_old, 2, stale, 0.0f, 1.0f, 6, 3, score, idx, nullptr, 0, nullptr);
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 3), (std::vector<int64_t>{0, 1, 2}));
  select_tokens_cpu(lse, sketch_new, sketch_old, 2, stale, 1.0f, -1.0f, 6, 3, score, idx, nullptr, 0,
                    nullptr);
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 3), (std::vector<int64_t>{0, 3, 5}));
  EXPECT_EQ(score[1], static_cast<float>(-std::exp(2.0)));
  // sketch_dim 0: no change term (sketches may be null).
  select_tokens_cpu(lse, nullptr, nullptr, 0, stale, 1.0f, 1.0f, 6, 2, score, idx, nullptr, 0, nullptr);
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 2), (std::vector<int64_t>{0, 1}));
}

TEST(SelectTokensCpu, TopScoresTieRuleAndSignedZero) {
  const float score[6] = {1, 3, 3, -0.0f, 0.0f, 3};
  int64_t idx[6];
  select_top_scores_cpu(score, 6, 2, idx);  // three tied at 3: the first two
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 2), (std::vector<int64_t>{1, 2}));
  select_top_scores_cpu(score, 6, 4, idx);
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 4), (std::vector<int64_t>{0, 1, 2, 5}));
  select_top_scores_cpu(score, 6, 5, idx);  // -0 ties with +0: the lower index, t3
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 5), (std::vector<int64_t>{0, 1, 2, 3, 5}));
  const float with_nan[3] = {1, NAN, 2};
  expect_invalid_argument([&] { select_top_scores_cpu(with_nan, 3, 1, idx); }, "NaN");
}

TEST(SelectTokensCpu, RejectsBadArguments) {
  const float lse[4] = {1, 2, 3, 4}, stale[4] = {}, sketch[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  float score[4];
  int64_t idx[4];
  const auto call = [&](const float* l, const float* sk, int64_t sketch_dim, float w_lse, int64_t n,
                        int64_t k, float* s, int64_t* i) {
    select_tokens_cpu(l, sk, sk, sketch_dim, stale, w_lse, 1.0f, n, k, s, i, nullptr, 0, nullptr);
  };
  expect_invalid_argument([&] { call(lse, sketch, 2, 1.0f, 4, 0, score, idx); }, "k must be");
  expect_invalid_argument([&] { call(lse, sketch, 2, 1.0f, 4, 5, score, idx); }, "k must be");
  expect_invalid_argument([&] { call(lse, sketch, 2, 1.0f, 0, 1, score, idx); }, "n must be");
  expect_invalid_argument([&] { call(lse, sketch, -1, 1.0f, 4, 2, score, idx); }, "sketch_dim");
  expect_invalid_argument([&] { call(lse, nullptr, 2, 1.0f, 4, 2, score, idx); }, "sketch_new");
  expect_invalid_argument([&] { call(nullptr, sketch, 2, 1.0f, 4, 2, score, idx); }, "lse");
  expect_invalid_argument([&] { call(lse, sketch, 2, 1.0f, 4, 2, nullptr, idx); }, "score_out");
  expect_invalid_argument([&] { call(lse, sketch, 2, 1.0f, 4, 2, score, nullptr); }, "idx_out");
  expect_invalid_argument([&] { call(lse, sketch, 2, INFINITY, 4, 2, score, idx); }, "w_lse");
  const float nan_lse[4] = {1, NAN, 3, 4};  // a NaN score is an error in the reference
  expect_invalid_argument([&] { call(nan_lse, sketch, 2, 1.0f, 4, 2, score, idx); }, "NaN");
}

// ------------------------------------------------------------------------------------------------
// scatter_tokens_cpu

TEST(ScatterTokensCpu, MatchesHandComputation) {
  // n 4, dim 4, tokens 1 and 3 selected; 2 heads; 2 sketch columns; no residual update (y null).
  constexpr int64_t kN = 4, kDim = 4, kK = 2, kHeads = 2, kSketch = 2;
  // h rounds to bf16 as: 1 -> 3F80; 1 + 2^-8 (3F808000, a tie) -> 3F80 (even); -2.5 -> C020;
  // 3.14159265 -> 4049; 0.1 (3DCCCCCD) -> 3DCD; 1 + 3 * 2^-8 (3F818000, a tie) -> 3F82 (even);
  // -0 -> 8000; 65504 (477FE000) -> 4780, which is 65536.
  const float h[kK * kDim] = {1.0f, 1.00390625f, -2.5f, 3.14159265f, 0.1f, 1.01171875f, -0.0f, 65504.0f};
  const int64_t idx[kK] = {1, 3};
  const float lse_sel[kHeads * kK] = {1, 2, 3, 5};  // [heads, k]: means (1 + 3) / 2 = 2 and (2 + 5) / 2 = 3.5
  const float sketch_new[kN * kSketch] = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<bf16> cache = to_bf16({0.5f, -1, 2, 0.25f, 99, 99, 99, 99, 7, 8, 9, 10, 99, 99, 99, 99});
  std::vector<float> cache_lse = {10, 10, 10, 10}, cache_sketch(kN * kSketch, -1.0f), stale = {0, 4, 2, 0};
  scatter_tokens_cpu(h, nullptr, nullptr, idx, kK, lse_sel, kHeads, sketch_new, kSketch, cache.data(),
                     cache_lse.data(), cache_sketch.data(), stale.data(), kN, kDim, nullptr);
  const uint16_t expected_bits[kN * kDim] = {0x3F00, 0xBF80, 0x4000, 0x3E80, 0x3F80, 0x3F80, 0xC020, 0x4049,
                                             0x40E0, 0x4100, 0x4110, 0x4120, 0x3DCD, 0x3F82, 0x8000, 0x4780};
  for (int64_t i = 0; i < kN * kDim; ++i)
    EXPECT_EQ(cache[i].bits, expected_bits[i]) << "cache_out[" << i << "]";
  EXPECT_EQ(cache_lse, (std::vector<float>{10, 2, 10, 3.5f}));
  EXPECT_EQ(cache_sketch, (std::vector<float>{-1, -1, 2, 3, -1, -1, 6, 7}));
  EXPECT_EQ(stale, (std::vector<float>{1, 0, 3, 0}));
}

TEST(ScatterTokensCpu, FusesTheGatedResidualUpdate) {
  // Token 2 of 3 selected: cache row = bf16(h + y * gate), one rounding.
  // h [1, 2, 3, 4] + y [1, 1, -2, 0.5] * gate [0.5, 0, 1, 2] = [1.5, 2, 1, 5];
  // gate null: h + y = [2, 3, 1, 4.5]. The unselected rows stay as they were.
  const float h[4] = {1, 2, 3, 4};
  const std::vector<bf16> y = to_bf16({1, 1, -2, 0.5f});
  const float gate[4] = {0.5f, 0, 1, 2}, lse[1] = {7};
  const int64_t idx[1] = {2};
  for (const bool gated : {true, false}) {
    std::vector<bf16> cache = to_bf16({9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7});
    std::vector<float> cache_lse = {0, 0, 0}, stale = {1, 1, 1};
    scatter_tokens_cpu(h, y.data(), gated ? gate : nullptr, idx, 1, lse, 1, nullptr, 0, cache.data(),
                       cache_lse.data(), nullptr, stale.data(), 3, 4, nullptr);
    const std::vector<float> row = gated ? std::vector<float>{1.5f, 2, 1, 5} : std::vector<float>{2, 3, 1, 4.5f};
    EXPECT_EQ(to_float(cache), (std::vector<float>{9, 9, 9, 9, 8, 8, 8, 8, row[0], row[1], row[2], row[3]}));
    EXPECT_EQ(cache_lse, (std::vector<float>{0, 0, 7}));
    EXPECT_EQ(stale, (std::vector<float>{2, 2, 0}));
  }
}

TEST(ScatterTokensCpu, NoSelectedTokensOnlyAges) {
  std::vector<bf16> cache = to_bf16({1, 2, 3, 4});
  std::vector<float> stale = {0, 5};
  scatter_tokens_cpu(nullptr, nullptr, nullptr, nullptr, 0, nullptr, 0, nullptr, 8, cache.data(), nullptr, nullptr,
                     stale.data(), 2, 2, nullptr);
  EXPECT_EQ(to_float(cache), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(stale, (std::vector<float>{1, 6}));
}

TEST(ScatterTokensCpu, RejectsBadArguments) {
  const float h[8] = {}, lse_sel[2] = {}, sketch_new[8] = {};
  std::vector<bf16> cache(16);
  float cache_lse[4], cache_sketch[8], stale[4];
  const auto call = [&](const int64_t* idx, int64_t k, int64_t heads, int64_t n, int64_t dim,
                        const float* hh) {
    scatter_tokens_cpu(hh, nullptr, nullptr, idx, k, lse_sel, heads, sketch_new, 2, cache.data(), cache_lse,
                       cache_sketch, stale, n, dim, nullptr);
  };
  const int64_t sorted[2] = {1, 3}, unsorted[2] = {3, 1}, duplicate[2] = {1, 1}, outside[2] = {1, 4},
                negative[2] = {-1, 2};
  expect_invalid_argument([&] { call(sorted, 5, 1, 4, 4, h); }, "k must be");
  expect_invalid_argument([&] { call(sorted, -1, 1, 4, 4, h); }, "k must be");
  expect_invalid_argument([&] { call(sorted, 2, 0, 4, 4, h); }, "heads");
  expect_invalid_argument([&] { call(sorted, 2, 1, -4, 4, h); }, "n must be");
  expect_invalid_argument([&] { call(sorted, 2, 1, 4, -4, h); }, "dim");
  expect_invalid_argument([&] { call(sorted, 2, 1, 4, 4, nullptr); }, "h must");
  expect_invalid_argument([&] { call(nullptr, 2, 1, 4, 4, h); }, "idx must not");
  // The kernel takes these on trust (the caller's contract); the reference checks them.
  expect_invalid_argument([&] { call(unsorted, 2, 1, 4, 4, h); }, "ascending");
  expect_invalid_argument([&] { call(duplicate, 2, 1, 4, 4, h); }, "ascending");
  expect_invalid_argument([&] { call(outside, 2, 1, 4, 4, h); }, "ascending");
  expect_invalid_argument([&] { call(negative, 2, 1, 4, 4, h); }, "ascending");
}

// ------------------------------------------------------------------------------------------------
// merge_attention_splits_cpu

/// Softmax attention of one query over keys [begin, end) in double: the output row and its log-sum-exp.
struct AttentionRow {
  std::vector<double> out;
  double lse;
};
AttentionRow attend(const std::vector<double>& q, const std::vector<std::vector<double>>& k,
                    const std::vector<std::vector<double>>& v, size_t begin, size_t end) {
  std::vector<double> score;
  for (size_t j = begin; j < end; ++j)
    score.push_back(std::inner_product(q.begin(), q.end(), k[j].begin(), 0.0));
  const double m = *std::max_element(score.begin(), score.end());
  double total = 0.0;
  for (double& x : score) total += (x = std::exp(x - m));
  AttentionRow r{std::vector<double>(v[0].size(), 0.0), m + std::log(total)};
  for (size_t j = begin; j < end; ++j)
    for (size_t c = 0; c < r.out.size(); ++c) r.out[c] += score[j - begin] / total * v[j][c];
  return r;
}

TEST(MergeAttentionSplitsCpu, MergedPartsEqualAttentionOverAllKeys) {
  // Batch 2, 3 query rows, 2 heads of 4, 6 keys in 2 or 3 parts. Each part's output is rounded to bf16,
  // as the fused kernel returns it; the merge must then agree with attention over all keys to bf16
  // precision, and its log-sum-exp with the full one to float precision.
  constexpr int64_t kBatch = 2, kRows = 3, kHeads = 2, kHd = 4, kKeys = 6, kWidth = kHeads * kHd;
  std::mt19937 rng(17);
  std::normal_distribution<double> normal(0.0, 1.0);
  const auto random_rows = [&](size_t count) {
    std::vector<std::vector<double>> rows(count, std::vector<double>(kHd));
    for (auto& row : rows)
      for (double& x : row) x = normal(rng);
    return rows;
  };
  for (const int64_t splits : {2, 3}) {
    SCOPED_TRACE("splits " + std::to_string(splits));
    const size_t per_part = kKeys / splits;
    std::vector<bf16> parts(kBatch * splits * kRows * kWidth);
    std::vector<float> part_lse(kBatch * splits * kHeads * kRows);
    std::vector<AttentionRow> full;
    for (int64_t b = 0; b < kBatch; ++b) {
      for (int64_t h = 0; h < kHeads; ++h) {
        const auto k = random_rows(kKeys), v = random_rows(kKeys), q = random_rows(kRows);
        for (int64_t r = 0; r < kRows; ++r) {
          full.push_back(attend(q[r], k, v, 0, kKeys));  // index (b * kHeads + h) * kRows + r
          for (int64_t s = 0; s < splits; ++s) {
            const auto part = attend(q[r], k, v, s * per_part, (s + 1) * per_part);
            part_lse[((b * splits + s) * kHeads + h) * kRows + r] = static_cast<float>(part.lse);
            for (int64_t c = 0; c < kHd; ++c)
              parts[((b * splits + s) * kRows + r) * kWidth + h * kHd + c] =
                  float_to_bf16(static_cast<float>(part.out[c]));
          }
        }
      }
    }
    std::vector<bf16> out(kBatch * kRows * kWidth);
    std::vector<float> lse(kBatch * kHeads * kRows);
    merge_attention_splits_cpu(parts.data(), part_lse.data(), kBatch, splits, kRows, kHeads, kHd, out.data(),
                               lse.data(), nullptr);
    for (int64_t b = 0; b < kBatch; ++b) {
      for (int64_t h = 0; h < kHeads; ++h) {
        for (int64_t r = 0; r < kRows; ++r) {
          const AttentionRow& want = full[(b * kHeads + h) * kRows + r];
          const std::string at =
              "b " + std::to_string(b) + " head " + std::to_string(h) + " row " + std::to_string(r);
          EXPECT_NEAR(lse[(b * kHeads + h) * kRows + r], want.lse, 1e-5 * std::fabs(want.lse) + 1e-6) << at;
          // Each part's output carries half an ulp of bf16 (2^-9 relative), the merge one more rounding.
          for (int64_t c = 0; c < kHd; ++c)
            EXPECT_NEAR(bf16_to_float(out[(b * kRows + r) * kWidth + h * kHd + c]), want.out[c], 8e-3)
                << at << " col " << c;
        }
      }
    }
  }
}

TEST(MergeAttentionSplitsCpu, EmptyPartsWeighNothing) {
  // One row, one head of 2, 3 parts: part 1 saw no keys (lse -inf, output garbage), parts 0 and 2 have
  // lse log 1 and log 3, so weights 1/4 and 3/4 and merged lse log 4. A row whose parts are all empty
  // gives 0 and -inf.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<bf16> parts = to_bf16({4, -8, 1e30f, 1e30f, 8, 0});
  const std::vector<float> part_lse = {0.0f, -inf, std::log(3.0f)};
  std::vector<bf16> out(2);
  float lse = 0;
  merge_attention_splits_cpu(parts.data(), part_lse.data(), 1, 3, 1, 1, 2, out.data(), &lse, nullptr);
  EXPECT_EQ(to_float(out), (std::vector<float>{7, -2}));  // 4/4 + 8 * 3/4, -8/4 + 0
  EXPECT_NEAR(lse, std::log(4.0f), 1e-6);
  const std::vector<float> empty = {-inf, -inf, -inf};
  merge_attention_splits_cpu(parts.data(), empty.data(), 1, 3, 1, 1, 2, out.data(), &lse, nullptr);
  EXPECT_EQ(to_float(out), (std::vector<float>{0, 0}));
  EXPECT_EQ(lse, -inf);
  // Without an lse output, the rows are merged all the same.
  merge_attention_splits_cpu(parts.data(), part_lse.data(), 1, 3, 1, 1, 2, out.data(), nullptr, nullptr);
  EXPECT_EQ(to_float(out), (std::vector<float>{7, -2}));
}

TEST(MergeAttentionSplitsCpu, RejectsBadArguments) {
  const std::vector<bf16> parts(16);
  const std::vector<float> lse(8);
  std::vector<bf16> out(8);
  const auto call = [&](const bf16* p, int64_t batch, int64_t splits, int64_t rows, int64_t heads,
                        int64_t hd) {
    merge_attention_splits_cpu(p, lse.data(), batch, splits, rows, heads, hd, out.data(), nullptr, nullptr);
  };
  expect_invalid_argument([&] { call(parts.data(), 1, 0, 2, 2, 2); }, "splits must be");
  expect_invalid_argument([&] { call(parts.data(), -1, 2, 2, 2, 2); }, "batch must be");
  expect_invalid_argument([&] { call(parts.data(), 1, 2, -2, 2, 2); }, "rows must be");
  expect_invalid_argument([&] { call(parts.data(), 1, 2, 2, 0, 2); }, "heads must be");
  expect_invalid_argument([&] { call(parts.data(), 1, 2, 2, 2, 0); }, "head_dim must be");
  expect_invalid_argument([&] { call(nullptr, 1, 2, 2, 2, 2); }, "must not be null");
  call(nullptr, 1, 2, 0, 2, 2);  // no rows: nothing to read
}

#if ASTRAEA_HAS_CUDA_KERNELS
TEST(CudaCheck, ThrowsCudaErrorNamingTheCall) {
  try {
    ASTRAEA_CUDA_CHECK(cudaErrorInvalidValue);
    ADD_FAILURE() << "no exception";
  } catch (const CudaError& e) {
    EXPECT_EQ(e.code(), cudaErrorInvalidValue);
    EXPECT_NE(std::string(e.what()).find("cudaErrorInvalidValue"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("kernels_test.cpp"), std::string::npos) << e.what();
  }
  ASTRAEA_CUDA_CHECK_NOEXCEPT(cudaErrorInvalidValue);  // logs one line, returns
}
#else
TEST(CudaCheck, NoDeviceWithoutCudaKernels) { EXPECT_FALSE(cuda_device_available()); }
#endif

// ------------------------------------------------------------------------------------------------
// Every kernel against its CPU reference.

#if ASTRAEA_HAS_CUDA_KERNELS

/// Device memory for `count` elements, poisoned with 0xFF bytes (NaN as float and as bf16) from the
/// start, with poisoned guard elements around the data to catch stray writes. `offset` elements of
/// guard in front of the data misalign it on purpose.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count, size_t offset = 0) : count_(count), offset_(offset) {
    ASTRAEA_CUDA_CHECK(cudaMalloc(&base_, total_bytes()));
    ASTRAEA_CUDA_CHECK(cudaMemset(base_, kPoison, total_bytes()));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { ASTRAEA_CUDA_CHECK_NOEXCEPT(cudaFree(base_)); }

  T* get() const { return reinterpret_cast<T*>(static_cast<char*>(base_) + offset_ * sizeof(T)); }
  void upload(const std::vector<T>& host) const {
    ASTRAEA_CUDA_CHECK(cudaMemcpy(get(), host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    ASTRAEA_CUDA_CHECK(cudaMemcpy(host.data(), get(), count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  /// True when every byte outside the data still holds the poison.
  bool guards_intact() const {
    std::vector<unsigned char> bytes(total_bytes());
    ASTRAEA_CUDA_CHECK(cudaMemcpy(bytes.data(), base_, bytes.size(), cudaMemcpyDeviceToHost));
    const size_t begin = offset_ * sizeof(T), end = begin + count_ * sizeof(T);
    for (size_t i = 0; i < bytes.size(); ++i)
      if ((i < begin || i >= end) && bytes[i] != kPoison) return false;
    return true;
  }

 private:
  static constexpr unsigned char kPoison = 0xFF;
  static constexpr size_t kGuardElems = 64;
  size_t total_bytes() const { return (offset_ + count_ + kGuardElems) * sizeof(T); }
  size_t count_, offset_;
  void* base_ = nullptr;
};

/// One output of one kernel run next to the reference's.
struct Comparison {
  std::string name;
  std::vector<float> reference, kernel;
  double tolerance;                              // on ||kernel - reference|| / ||reference||
  std::function<std::string(size_t)> inputs_at;  // the inputs behind element i, for the dump
};

/// Inputs must be real data: finite and not all zero.
void expect_real_input(const std::vector<float>& values, const std::string& name) {
  bool any_non_zero = false;
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_TRUE(std::isfinite(values[i])) << "input " << name << "[" << i << "] = " << values[i];
    any_non_zero |= values[i] != 0.0f;
  }
  EXPECT_TRUE(any_non_zero) << "input " << name << " is all zero";
}

void expect_matches(const Comparison& c) {
  ASSERT_EQ(c.kernel.size(), c.reference.size()) << c.name;
  const auto dump = [&](size_t i) {
    std::ostringstream s;
    s << c.name << "[" << i << "]: " << c.inputs_at(i) << ", reference " << c.reference[i] << ", kernel "
      << c.kernel[i];
    return s.str();
  };
  double diff_sq = 0.0, ref_sq = 0.0, kernel_sq = 0.0;
  for (size_t i = 0; i < c.kernel.size(); ++i) {
    ASSERT_TRUE(std::isfinite(c.kernel[i])) << "not finite (unwritten if NaN): " << dump(i);
    ASSERT_TRUE(std::isfinite(c.reference[i])) << "reference not finite: " << dump(i);
    const double d = static_cast<double>(c.kernel[i]) - c.reference[i];
    diff_sq += d * d;
    ref_sq += static_cast<double>(c.reference[i]) * c.reference[i];
    kernel_sq += static_cast<double>(c.kernel[i]) * c.kernel[i];
  }
  ASSERT_GT(ref_sq, 0.0) << c.name << ": reference is all zero";
  ASSERT_GT(kernel_sq, 0.0) << c.name << ": kernel output is all zero";
  const double error = std::sqrt(diff_sq / ref_sq);
  if (error <= c.tolerance) return;
  // The first element off by more than the tolerance in units of the reference's RMS.
  const double limit = c.tolerance * std::sqrt(ref_sq / static_cast<double>(c.reference.size()));
  size_t bad = 0;
  while (bad + 1 < c.kernel.size() && std::fabs(c.kernel[bad] - c.reference[bad]) <= limit) ++bad;
  ADD_FAILURE() << c.name << ": normalised error " << error << " > " << c.tolerance << "; first bad " << dump(bad);
}

std::vector<float> normal_values(std::mt19937& rng, size_t count, float mean, float stddev) {
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  return values;
}

/// Rows of N(0, 1) around a per-row offset, so that every row has its own non-zero mean.
std::vector<float> offset_rows(std::mt19937& rng, int64_t rows, int64_t row_length) {
  std::vector<float> values = normal_values(rng, static_cast<size_t>(rows * row_length), 0.0f, 1.0f);
  const std::vector<float> offsets = normal_values(rng, static_cast<size_t>(rows), 0.0f, 3.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < row_length; ++c) values[r * row_length + c] += offsets[r];
  return values;
}

struct ResidualLayerNormCase {
  const char* name;
  int64_t rows, dim;
  bool y, gate, out, mul, add;
  size_t misalign = 0;  // elements in front of every array; 1 rules out 16-byte accesses
};

std::vector<Comparison> run_residual_layer_norm(const ResidualLayerNormCase& k, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t n = static_cast<size_t>(k.rows * k.dim), d = static_cast<size_t>(k.dim);
  const std::vector<float> x_in = offset_rows(rng, k.rows, k.dim);
  const std::vector<bf16> y = to_bf16(normal_values(rng, n, 0.0f, 1.0f));
  const std::vector<float> gate = normal_values(rng, d, 0.0f, 1.0f);
  const std::vector<float> mul = normal_values(rng, d, 1.0f, 0.2f);  // 1 + scale
  const std::vector<float> add = normal_values(rng, d, 0.0f, 1.0f);  // shift
  expect_real_input(x_in, "x");
  if (k.y) expect_real_input(to_float(y), "y");
  if (k.gate) expect_real_input(gate, "gate");
  if (k.mul) expect_real_input(mul, "mul");
  if (k.add) expect_real_input(add, "add");

  DeviceBuffer<float> x_dev(n, k.misalign), gate_dev(d, k.misalign), mul_dev(d, k.misalign), add_dev(d, k.misalign);
  DeviceBuffer<bf16> y_dev(n, k.misalign), out_dev(n, k.misalign);
  x_dev.upload(x_in);
  y_dev.upload(y);
  gate_dev.upload(gate);
  mul_dev.upload(mul);
  add_dev.upload(add);
  residual_layer_norm(x_dev.get(), k.y ? y_dev.get() : nullptr, k.gate ? gate_dev.get() : nullptr,
                      k.mul ? mul_dev.get() : nullptr, k.add ? add_dev.get() : nullptr, k.out ? out_dev.get() : nullptr,
                      k.rows, k.dim, 1e-6f, nullptr);
  ASTRAEA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(x_dev.guards_intact()) << "write outside x";
  EXPECT_TRUE(out_dev.guards_intact()) << "write outside out";

  std::vector<float> x_ref = x_in;
  std::vector<bf16> out_ref(n);
  residual_layer_norm_cpu(x_ref.data(), k.y ? y.data() : nullptr, k.gate ? gate.data() : nullptr,
                          k.mul ? mul.data() : nullptr, k.add ? add.data() : nullptr, k.out ? out_ref.data() : nullptr,
                          k.rows, k.dim, 1e-6f, nullptr);

  const auto inputs_at = [=](size_t i) {
    const size_t c = i % d;
    std::ostringstream s;
    s << "row " << i / d << " col " << c << ": x " << x_in[i];
    if (k.y) s << ", y " << bf16_to_float(y[i]);
    if (k.gate) s << ", gate " << gate[c];
    if (k.mul) s << ", mul " << mul[c];
    if (k.add) s << ", add " << add[c];
    return s.str();
  };
  std::vector<Comparison> result;
  result.push_back({"x", x_ref, x_dev.download(), 1e-6, inputs_at});
  if (k.out) result.push_back({"out", to_float(out_ref), to_float(out_dev.download()), 1e-2, inputs_at});
  return result;
}

struct RmsNormRopeCase {
  const char* name;
  int64_t heads, head_dim, grid_f, grid_h, grid_w;
  int64_t stride_extra;  // src_row_stride = dim * stride_dims + stride_extra
  int64_t stride_dims;
  int64_t column;  // where the normalised slice starts in each src row (k of packed qkv: dim)
  bool rope;
  size_t misalign = 0;
  bool gathered = false;  // rows are a random third of the grid's tokens, named by `positions`
};

std::vector<Comparison> run_rms_norm_rope(const RmsNormRopeCase& k, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t dim = k.heads * k.head_dim, grid_tokens = k.grid_f * k.grid_h * k.grid_w;
  // Gathered rows: a sorted random third of the grid's tokens, as the token-wise engine selects them.
  std::vector<int64_t> positions(static_cast<size_t>(grid_tokens));
  std::iota(positions.begin(), positions.end(), int64_t{0});
  if (k.gathered) {
    std::shuffle(positions.begin(), positions.end(), rng);
    positions.resize(static_cast<size_t>(std::max<int64_t>(1, grid_tokens / 3)));
    std::sort(positions.begin(), positions.end());
  }
  const int64_t tokens = static_cast<int64_t>(positions.size());
  const int64_t stride = dim * k.stride_dims + k.stride_extra;
  const std::vector<bf16> src = to_bf16(offset_rows(rng, tokens, stride));
  const std::vector<float> weight = normal_values(rng, static_cast<size_t>(dim), 1.0f, 0.3f);
  std::vector<float> inv_freq(static_cast<size_t>(k.head_dim / 2));
  wan_rope_inv_freq(k.head_dim, 10000.0, inv_freq.data());
  expect_real_input(to_float(src), "src");
  expect_real_input(weight, "weight");

  const size_t n_out = static_cast<size_t>(tokens * dim);
  DeviceBuffer<bf16> src_dev(src.size(), k.misalign), out_dev(n_out, k.misalign);
  DeviceBuffer<float> weight_dev(weight.size(), k.misalign), inv_freq_dev(inv_freq.size(), k.misalign);
  DeviceBuffer<int64_t> positions_dev(positions.size());
  positions_dev.upload(positions);
  src_dev.upload(src);
  weight_dev.upload(weight);
  inv_freq_dev.upload(inv_freq);
  rms_norm_rope(src_dev.get() + k.column, stride, weight_dev.get(), k.rope ? inv_freq_dev.get() : nullptr,
                k.gathered ? positions_dev.get() : nullptr, k.grid_f,
                k.grid_h, k.grid_w, k.heads, k.head_dim, 1e-6f, out_dev.get(), tokens, nullptr);
  ASTRAEA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(out_dev.guards_intact()) << "write outside out";

  std::vector<bf16> out_ref(n_out);
  rms_norm_rope_cpu(src.data() + k.column, stride, weight.data(), k.rope ? inv_freq.data() : nullptr,
                    k.gathered ? positions.data() : nullptr, k.grid_f,
                    k.grid_h, k.grid_w, k.heads, k.head_dim, 1e-6f, out_ref.data(), tokens, nullptr);

  const auto inputs_at = [=](size_t i) {
    const int64_t t = static_cast<int64_t>(i) / dim, c = static_cast<int64_t>(i) % dim;
    const int64_t pair_start = c - c % 2;
    std::ostringstream s;
    s << "token " << t << " (f " << t / (k.grid_h * k.grid_w) << ", h " << (t / k.grid_w) % k.grid_h << ", w "
      << t % k.grid_w << ") col " << c << ": pair x (" << bf16_to_float(src[t * stride + k.column + pair_start]) << ", "
      << bf16_to_float(src[t * stride + k.column + pair_start + 1]) << "), weight " << weight[c];
    if (k.rope) s << ", inv_freq " << inv_freq[(c % k.head_dim) / 2];
    return s.str();
  };
  return {{"out", to_float(out_ref), to_float(out_dev.download()), 1e-2, inputs_at}};
}

struct SelectTokensCase {
  const char* name;
  int64_t n, k, sketch_dim;
  float w_lse, w_stale;
};

/// Random inputs as the engine's: lse around 5, sketches that moved a little (a third not at all:
/// those tie on their staleness term), integer staleness 0..5.
std::vector<Comparison> run_select_tokens(const SelectTokensCase& k, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t n = static_cast<size_t>(k.n), sketch_size = static_cast<size_t>(k.n * k.sketch_dim);
  const std::vector<float> lse = normal_values(rng, n, 5.0f, 1.0f);
  const std::vector<float> sketch_old = normal_values(rng, sketch_size, 0.0f, 1.0f);
  std::vector<float> sketch_new = normal_values(rng, sketch_size, 0.0f, 0.3f);
  for (size_t j = 0; j < sketch_size; ++j) {
    sketch_new[j] =
        (j / static_cast<size_t>(k.sketch_dim)) % 3 == 0 ? sketch_old[j] : sketch_old[j] + sketch_new[j];
  }
  std::uniform_int_distribution<int> stale_count(0, 5);
  std::vector<float> stale(n);
  for (float& v : stale) v = static_cast<float>(stale_count(rng));
  expect_real_input(lse, "lse");
  expect_real_input(sketch_old, "sketch_old");
  expect_real_input(sketch_new, "sketch_new");
  expect_real_input(stale, "stale");

  DeviceBuffer<float> lse_dev(n), old_dev(sketch_size), new_dev(sketch_size), stale_dev(n), score_dev(n);
  DeviceBuffer<int64_t> idx_dev(static_cast<size_t>(k.k));
  const size_t workspace_bytes = select_tokens_workspace_bytes(k.n);
  DeviceBuffer<unsigned char> workspace_dev(workspace_bytes);
  lse_dev.upload(lse);
  old_dev.upload(sketch_old);
  new_dev.upload(sketch_new);
  stale_dev.upload(stale);
  select_tokens(lse_dev.get(), new_dev.get(), old_dev.get(), k.sketch_dim, stale_dev.get(), k.w_lse,
                k.w_stale, k.n, k.k, score_dev.get(), idx_dev.get(), workspace_dev.get(), workspace_bytes,
                nullptr);
  ASTRAEA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(score_dev.guards_intact()) << "write outside score_out";
  EXPECT_TRUE(idx_dev.guards_intact()) << "write outside idx_out";
  EXPECT_TRUE(workspace_dev.guards_intact()) << "write outside the workspace";

  std::vector<float> score_ref(n);
  std::vector<int64_t> idx_ref(static_cast<size_t>(k.k));
  select_tokens_cpu(lse.data(), sketch_new.data(), sketch_old.data(), k.sketch_dim, stale.data(), k.w_lse,
                    k.w_stale, k.n, k.k, score_ref.data(), idx_ref.data(), nullptr, 0, nullptr);
  const std::vector<float> score = score_dev.download();
  const auto inputs_at = [=](size_t i) {
    double squares = 0.0;
    for (int64_t c = 0; c < k.sketch_dim; ++c) {
      const size_t j = i * static_cast<size_t>(k.sketch_dim) + static_cast<size_t>(c);
      squares += static_cast<double>(sketch_new[j] - sketch_old[j]) * (sketch_new[j] - sketch_old[j]);
    }
    std::ostringstream s;
    s << "token " << i << ": lse " << lse[i] << ", |sketch change| " << std::sqrt(squares) << ", stale "
      << stale[i];
    return s.str();
  };

  // Scores differ from the reference's by rounding, which may reorder near-equal ones: the indices
  // must be exactly what the reference's selection makes of the kernel's own scores.
  const bool scores_written =
      std::all_of(score.begin(), score.end(), [](float v) { return std::isfinite(v); });
  EXPECT_TRUE(scores_written) << "score_out not finite (unwritten if NaN)";
  if (scores_written) {
    std::vector<int64_t> expected(static_cast<size_t>(k.k));
    select_top_scores_cpu(score.data(), k.n, k.k, expected.data());
    const std::vector<int64_t> idx = idx_dev.download();
    for (size_t r = 0; r < idx.size(); ++r) {
      if (idx[r] == expected[r]) continue;
      const auto score_of = [&](int64_t i) {
        return i >= 0 && i < k.n ? score[static_cast<size_t>(i)] : NAN;
      };
      ADD_FAILURE() << "idx_out[" << r << "] = " << idx[r] << " (score " << score_of(idx[r]) << "), expected "
                    << expected[r] << " (score " << score_of(expected[r]) << ", " << inputs_at(expected[r])
                    << "); threshold score " << score[static_cast<size_t>(expected.back())];
      break;
    }
  }
  return {{"score", score_ref, score, 1e-5, inputs_at}};
}

struct ScatterTokensCase {
  const char* name;
  int64_t n, dim, k, heads, sketch_dim;
  bool residual = true;  // y and gate given: the cache row is h + y * gate
  size_t misalign = 0;   // elements in front of every array; 1 rules out 16-byte accesses
};

std::vector<Comparison> run_scatter_tokens(const ScatterTokensCase& k, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t n = static_cast<size_t>(k.n), rows = static_cast<size_t>(k.n * k.dim);
  const size_t selected_rows = static_cast<size_t>(k.k * k.dim),
               sketch_size = static_cast<size_t>(k.n * k.sketch_dim);
  // A sorted random k-subset, as select_tokens makes them.
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), int64_t{0});
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(static_cast<size_t>(k.k));
  std::sort(idx.begin(), idx.end());
  const std::vector<float> h = offset_rows(rng, k.k, k.dim);
  const std::vector<bf16> y = to_bf16(normal_values(rng, selected_rows, 0.0f, 1.0f));
  const std::vector<float> gate = normal_values(rng, static_cast<size_t>(k.dim), 0.0f, 1.0f);
  const std::vector<float> lse_sel = normal_values(rng, static_cast<size_t>(k.heads * k.k), 5.0f, 1.0f);
  const std::vector<float> sketch_new = normal_values(rng, sketch_size, 0.0f, 1.0f);
  const std::vector<bf16> cache_in = to_bf16(offset_rows(rng, k.n, k.dim));
  const std::vector<float> cache_lse_in = normal_values(rng, n, 5.0f, 1.0f);
  const std::vector<float> cache_sketch_in = normal_values(rng, sketch_size, 0.0f, 1.0f);
  std::uniform_int_distribution<int> stale_count(0, 5);
  std::vector<float> stale_in(n);
  for (float& v : stale_in) v = static_cast<float>(stale_count(rng));
  if (k.k > 0) {
    expect_real_input(h, "h");
    expect_real_input(lse_sel, "lse_sel");
  }
  expect_real_input(sketch_new, "sketch_new");
  expect_real_input(to_float(cache_in), "cache_out");

  DeviceBuffer<float> h_dev(selected_rows, k.misalign), lse_sel_dev(lse_sel.size(), k.misalign);
  DeviceBuffer<float> sketch_new_dev(sketch_size, k.misalign), cache_lse_dev(n, k.misalign);
  DeviceBuffer<float> cache_sketch_dev(sketch_size, k.misalign), stale_dev(n, k.misalign);
  DeviceBuffer<float> gate_dev(gate.size(), k.misalign);
  DeviceBuffer<bf16> cache_dev(rows, k.misalign), y_dev(selected_rows, k.misalign);
  DeviceBuffer<int64_t> idx_dev(idx.size());
  h_dev.upload(h);
  y_dev.upload(y);
  gate_dev.upload(gate);
  lse_sel_dev.upload(lse_sel);
  sketch_new_dev.upload(sketch_new);
  cache_lse_dev.upload(cache_lse_in);
  cache_sketch_dev.upload(cache_sketch_in);
  stale_dev.upload(stale_in);
  cache_dev.upload(cache_in);
  idx_dev.upload(idx);
  scatter_tokens(h_dev.get(), k.residual ? y_dev.get() : nullptr, k.residual ? gate_dev.get() : nullptr,
                 idx_dev.get(), k.k, lse_sel_dev.get(), k.heads, sketch_new_dev.get(), k.sketch_dim, cache_dev.get(),
                 cache_lse_dev.get(), cache_sketch_dev.get(), stale_dev.get(), k.n, k.dim, nullptr);
  ASTRAEA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(cache_dev.guards_intact()) << "write outside cache_out";
  EXPECT_TRUE(cache_lse_dev.guards_intact()) << "write outside cache_lse";
  EXPECT_TRUE(cache_sketch_dev.guards_intact()) << "write outside cache_sketch";
  EXPECT_TRUE(stale_dev.guards_intact()) << "write outside stale";

  std::vector<bf16> cache_ref = cache_in;
  std::vector<float> cache_lse_ref = cache_lse_in, cache_sketch_ref = cache_sketch_in, stale_ref = stale_in;
  scatter_tokens_cpu(h.data(), k.residual ? y.data() : nullptr, k.residual ? gate.data() : nullptr, idx.data(), k.k,
                     lse_sel.data(), k.heads, sketch_new.data(), k.sketch_dim, cache_ref.data(), cache_lse_ref.data(),
                     cache_sketch_ref.data(), stale_ref.data(), k.n, k.dim, nullptr);

  // Token i's row r in h, or -1.
  std::vector<int64_t> row_of(n, -1);
  for (size_t r = 0; r < idx.size(); ++r) row_of[static_cast<size_t>(idx[r])] = static_cast<int64_t>(r);
  const auto token_inputs = [=](size_t i) {
    std::ostringstream s;
    s << "token " << i
      << (row_of[i] >= 0 ? " (selected, row " + std::to_string(row_of[i]) + ")" : " (cached)");
    return s.str();
  };
  const auto element_inputs = [=](size_t e) {
    const size_t i = e / static_cast<size_t>(k.dim), c = e % static_cast<size_t>(k.dim);
    std::ostringstream s;
    s << token_inputs(i) << " col " << c << ": cached " << bf16_to_float(cache_in[e]);
    if (row_of[i] >= 0) {
      const size_t e_row = static_cast<size_t>(row_of[i]) * static_cast<size_t>(k.dim) + c;
      s << ", h " << h[e_row];
      if (k.residual) s << ", y " << bf16_to_float(y[e_row]) << ", gate " << gate[c];
    }
    return s.str();
  };
  // The fused multiply-add, rounding to bf16 and copying are exact: only the lse mean (float sums vs
  // double) may differ.
  std::vector<Comparison> result;
  result.push_back({"cache_out", to_float(cache_ref), to_float(cache_dev.download()), 0.0, element_inputs});
  result.push_back({"cache_lse", cache_lse_ref, cache_lse_dev.download(), 1e-6, token_inputs});
  result.push_back({"cache_sketch", cache_sketch_ref, cache_sketch_dev.download(), 0.0,
                    [=](size_t j) { return token_inputs(j / static_cast<size_t>(k.sketch_dim)); }});
  const std::vector<float> stale = stale_dev.download();
  if (k.k < k.n) {
    result.push_back({"stale", stale_ref, stale, 0.0, token_inputs});
  } else {  // every token selected: all zero, which expect_matches would take for unwritten output
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(stale[i], 0.0f) << "stale[" << i << "]";
  }
  return result;
}

struct GatherLayerNormCase {
  const char* name;
  int64_t src_rows, rows, dim, sketch_dim;  // sketch_dim 0: no sketch
  bool gathered, y, h, out;
  size_t misalign = 0;
};

std::vector<Comparison> run_gather_residual_layer_norm(const GatherLayerNormCase& k, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t d = static_cast<size_t>(k.dim), n = static_cast<size_t>(k.rows) * d;
  const size_t sketch_size = static_cast<size_t>(k.rows * k.sketch_dim);
  const std::vector<bf16> src = to_bf16(offset_rows(rng, k.src_rows, k.dim));
  std::vector<int64_t> idx(static_cast<size_t>(k.src_rows));  // a sorted random subset, or 0..rows
  std::iota(idx.begin(), idx.end(), int64_t{0});
  if (k.gathered) std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(static_cast<size_t>(k.rows));
  std::sort(idx.begin(), idx.end());
  const std::vector<bf16> y = to_bf16(normal_values(rng, n, 0.0f, 1.0f));
  const std::vector<float> gate = normal_values(rng, d, 0.0f, 1.0f);
  const std::vector<float> mul = normal_values(rng, d, 1.0f, 0.2f), add = normal_values(rng, d, 0.0f, 1.0f);
  const std::vector<bf16> proj = to_bf16(normal_values(rng, static_cast<size_t>(k.sketch_dim) * d, 0.0f, 0.1f));
  expect_real_input(to_float(src), "src");

  DeviceBuffer<bf16> src_dev(src.size(), k.misalign), y_dev(n, k.misalign), out_dev(n, k.misalign);
  DeviceBuffer<float> gate_dev(d, k.misalign), mul_dev(d, k.misalign), add_dev(d, k.misalign);
  DeviceBuffer<bf16> proj_dev(proj.size(), k.misalign);
  DeviceBuffer<float> sketch_dev(sketch_size, k.misalign), h_dev(n, k.misalign);
  DeviceBuffer<int64_t> idx_dev(idx.size());
  src_dev.upload(src);
  y_dev.upload(y);
  gate_dev.upload(gate);
  mul_dev.upload(mul);
  add_dev.upload(add);
  proj_dev.upload(proj);
  idx_dev.upload(idx);
  const auto args = [&](bool device, float* h, float* sketch, bf16* out) {
    GatherLayerNormArgs a;
    a.src = device ? src_dev.get() : src.data();
    a.idx = k.gathered ? (device ? idx_dev.get() : idx.data()) : nullptr;
    a.y = k.y ? (device ? y_dev.get() : y.data()) : nullptr;
    a.gate = k.y ? (device ? gate_dev.get() : gate.data()) : nullptr;
    a.proj = device ? proj_dev.get() : proj.data();
    a.sketch_dim = k.sketch_dim;
    a.sketch = k.sketch_dim > 0 ? sketch : nullptr;
    a.mul = device ? mul_dev.get() : mul.data();
    a.add = device ? add_dev.get() : add.data();
    a.h = k.h ? h : nullptr;
    a.out = k.out ? out : nullptr;
    a.rows = k.rows;
    a.dim = k.dim;
    return a;
  };
  gather_residual_layer_norm(args(true, h_dev.get(), sketch_dev.get(), out_dev.get()), nullptr);
  ASTRAEA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(h_dev.guards_intact()) << "write outside h";
  EXPECT_TRUE(sketch_dev.guards_intact()) << "write outside sketch";
  EXPECT_TRUE(out_dev.guards_intact()) << "write outside out";
  std::vector<float> h_ref(n), sketch_ref(sketch_size);
  std::vector<bf16> out_ref(n);
  gather_residual_layer_norm_cpu(args(false, h_ref.data(), sketch_ref.data(), out_ref.data()), nullptr);

  const auto inputs_at = [=](size_t i) {
    std::ostringstream s;
    s << "row " << i / d << " (source row " << idx[i / d] << ") col " << i % d;
    return s.str();
  };
  std::vector<Comparison> result;
  if (k.h) result.push_back({"h", h_ref, h_dev.download(), 1e-6, inputs_at});
  if (k.out) result.push_back({"out", to_float(out_ref), to_float(out_dev.download()), 1e-2, inputs_at});
  if (k.sketch_dim > 0) {
    result.push_back({"sketch", sketch_ref, sketch_dev.download(), 1e-5, [=](size_t j) {
                        return "row " + std::to_string(j / static_cast<size_t>(k.sketch_dim)) + " column " +
                               std::to_string(j % static_cast<size_t>(k.sketch_dim));
                      }});
  }
  return result;
}

// The kernel's own handling of empty parts (lse -inf), which the random table cannot reach: the
// hand case of MergeAttentionSplitsCpu.EmptyPartsWeighNothing.
TEST(MergeAttentionSplitsGpu, EmptyPartsWeighNothing) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<bf16> parts = to_bf16({4, -8, 1e30f, 1e30f, 8, 0});
  DeviceBuffer<bf16> parts_dev(parts.size()), out_dev(2);
  DeviceBuffer<float> lse_dev(3), merged_lse_dev(1);
  parts_dev.upload(parts);
  for (const auto& [part_lse, want_out, want_lse] :
       {std::tuple{std::vector<float>{0.0f, -inf, std::log(3.0f)}, std::vector<float>{7, -2}, std::log(4.0f)},
        std::tuple{std::vector<float>{-inf, -inf, -inf}, std::vector<float>{0, 0}, -inf}}) {
    lse_dev.upload(part_lse);
    merge_attention_splits(parts_dev.get(), lse_dev.get(), 1, 3, 1, 1, 2, out_dev.get(), merged_lse_dev.get(),
                           nullptr);
    ASTRAEA_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(to_float(out_dev.download()), want_out);
    const float lse = merged_lse_dev.download()[0];
    if (std::isinf(want_lse)) {
      EXPECT_EQ(lse, want_lse);
    } else {
      EXPECT_NEAR(lse, want_lse, 1e-6);
    }
  }
}

struct MergeSplitsCase {
  const char* name;
  int64_t batch, splits, rows, heads, head_dim;
  bool lse = true;
  size_t misalign = 0;  // elements in front of every array; 1 rules out 16-byte accesses
};

std::vector<Comparison> run_merge_attention_splits(const MergeSplitsCase& k, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t width = k.heads * k.head_dim;
  const size_t part_size = static_cast<size_t>(k.batch * k.splits * k.rows * width),
               lse_size = static_cast<size_t>(k.batch * k.splits * k.heads * k.rows),
               out_size = static_cast<size_t>(k.batch * k.rows * width);
  const std::vector<bf16> parts = to_bf16(normal_values(rng, part_size, 0.0f, 1.0f));
  // Log-sum-exps spread over several units, so that the weights range from dominant to negligible.
  const std::vector<float> part_lse = normal_values(rng, lse_size, 8.0f, 3.0f);
  expect_real_input(to_float(parts), "parts");

  DeviceBuffer<bf16> parts_dev(part_size, k.misalign), out_dev(out_size, k.misalign);
  DeviceBuffer<float> part_lse_dev(lse_size, k.misalign), lse_dev(out_size / k.head_dim, k.misalign);
  parts_dev.upload(parts);
  part_lse_dev.upload(part_lse);
  merge_attention_splits(parts_dev.get(), part_lse_dev.get(), k.batch, k.splits, k.rows, k.heads, k.head_dim,
                         out_dev.get(), k.lse ? lse_dev.get() : nullptr, nullptr);
  ASTRAEA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(out_dev.guards_intact()) << "write outside out";
  EXPECT_TRUE(lse_dev.guards_intact()) << "write outside lse";

  std::vector<bf16> out_ref(out_size);
  std::vector<float> lse_ref(out_size / k.head_dim);
  merge_attention_splits_cpu(parts.data(), part_lse.data(), k.batch, k.splits, k.rows, k.heads, k.head_dim,
                             out_ref.data(), lse_ref.data(), nullptr);
  const auto element_inputs = [=](size_t e) {
    const size_t w = static_cast<size_t>(width), c = e % w, r = (e / w) % static_cast<size_t>(k.rows),
                 b = e / w / static_cast<size_t>(k.rows), h = c / static_cast<size_t>(k.head_dim);
    std::ostringstream s;
    s << "batch " << b << " row " << r << " col " << c << ": parts";
    for (int64_t p = 0; p < k.splits; ++p) {
      const size_t at = ((b * k.splits + p) * k.rows + r) * w + c;
      s << " " << bf16_to_float(parts[at]) << " (lse "
        << part_lse[((b * k.splits + p) * k.heads + h) * k.rows + r] << ")";
    }
    return s.str();
  };
  // The kernel's exp and log are the fast approximations (a few float ulps); bf16 rounding of the
  // output may then differ by one unit on some elements.
  std::vector<Comparison> result;
  result.push_back({"out", to_float(out_ref), to_float(out_dev.download()), 4e-3, element_inputs});
  if (k.lse) {
    result.push_back({"lse", lse_ref, lse_dev.download(), 1e-6,
                      [=](size_t i) { return "lse element " + std::to_string(i); }});
  }
  return result;
}

/// One kernel at one size against its CPU reference, with its own seed: one test each, so that a
/// filter selects one op or one size.
struct KernelCase {
  std::string name;  ///< "op: size"
  std::function<std::vector<Comparison>(uint32_t)> run;
  uint32_t seed = 0;
};

// What gtest prints for a case (and CTest shows beside its name): the case's own name.
void PrintTo(const KernelCase& c, std::ostream* out) { *out << c.name; }

std::vector<KernelCase> kernel_cases() {
  // clang-format off
  const ResidualLayerNormCase layer_norm_cases[] = {
      // name                                rows   dim     y      gate   out    mul    add   misalign
      {"residual, Wan 1.3B",                  300,  1536,  true,  true,  false, false, false},
      {"residual, no gate, dim 100",           37,   100,  true,  false, false, false, false},
      {"adaLN, Wan 1.3B",                     300,  1536,  false, false, true,  true,  true},
      {"plain LayerNorm, dim 96",               5,    96,  false, false, true,  false, false},
      {"fused, Wan 1.3B",                     300,  1536,  true,  true,  true,  true,  true},
      {"fused, Wan 14B (2 items/thread)",     200,  5120,  true,  true,  true,  true,  true},
      {"fused, dim 12288 (4 items/thread)",     4, 12288,  true,  true,  true,  true,  true},
      {"fused, dim 3",                         33,     3,  true,  true,  true,  true,  true},
      {"fused, dim 100 (scalar)",              17,   100,  true,  true,  true,  true,  true},
      {"fused, misaligned 1536 (scalar)",      64,  1536,  true,  true,  true,  true,  true,  1},
      {"fused, dim 5000 (scalar, 16 items)",    6,  5000,  true,  true,  true,  true,  true},
      {"fused, dim 20480 (8 items/thread)",     2, 20480,  true,  true,  true,  true,  true},
      {"fused, dim 32776 (streaming)",          2, 32776,  true,  true,  true,  true,  true},
      {"fused, dim 16385 (scalar, streaming)",  2, 16385,  true,  true,  true,  true,  true},
  };
  const GatherLayerNormCase gather_cases[] = {
      // name                                       src    rows   dim  sketch gathered y      h      out   misalign
      {"selection pass, Wan 1.3B (sketch + LN)",   2048,  2048,  1536,  8,    false, false, false, true},
      {"selection pass, Wan 14B",                   700,   700,  5120,  8,    false, false, false, true},
      {"selection pass, dim 1000, sketch 5",       3001,  3001,  1000,  5,    false, false, false, true},
      {"sketch only, Wan 1.3B",                     300,   300,  1536,  8,    false, false, false, false},
      {"gathered LN, Wan 1.3B",                    2048,   819,  1536,  0,    true,  false, false, true},
      {"gather + residual + LN, Wan 1.3B",         2048,  1024,  1536,  0,    true,  true,  true,  true},
      {"everything, Wan 14B (2 items/thread)",      400,   160,  5120, 16,    true,  true,  true,  true},
      {"everything, dim 100 (scalar)",               37,    13,   100,  3,    true,  true,  true,  true},
      {"everything, misaligned 1536 (scalar)",       64,    21,  1536,  8,    true,  true,  true,  true,  1},
      {"everything, dim 32776 (streaming)",           5,     3, 32776,  8,    true,  true,  true,  true},
      {"everything, dim 16385 (scalar streaming)",    5,     3, 16385,  8,    true,  true,  true,  true},
  };
  const RmsNormRopeCase rope_cases[] = {
      // name                                  heads hd   f  h   w     extra dims column rope  misalign
      {"q of packed qkv, Wan 1.3B",              12, 128, 2, 10,   15,  0, 3,    0,    true},
      {"k of packed qkv, Wan 1.3B",              12, 128, 2, 10,   15,  0, 3, 1536,    true},
      {"q of packed qkv, Wan 14B",               40, 128, 1,  8,   25,  0, 3,    0,    true},
      {"contiguous, 4 x 64",                      4,  64, 3,  4,    5,  0, 1,    0,    true},
      {"2 x 48",                                  2,  48, 2,  3,    7,  0, 1,    0,    true},
      {"2 x 48, angles up to 1199 rad",           2,  48, 1,  1, 1200,  0, 1,    0,    true},
      {"head_dim 6 (pairwise)",                   1,   6, 2,  3,    4,  0, 1,    0,    true},
      {"head_dim 12, dim 24 (pairwise)",          2,  12, 2,  2,    3,  0, 1,    0,    true},
      {"no rope, Wan 1.3B",                      12, 128, 1,  1,  100,  0, 3,    0,    false},
      {"stride dim + 2, misaligned (pairwise)",  12, 128, 2,  5,    6,  2, 1,    0,    true,  1},
      {"96 x 128 (4 items/thread)",              96, 128, 1,  1,    4,  0, 1,    0,    true},
      {"66 x 126 (pairwise, 8 items/thread)",    66, 126, 1,  1,    3,  0, 1,    0,    true},
      {"160 x 128 (8 items/thread)",            160, 128, 1,  1,    3,  0, 1,    0,    true},
      {"257 x 128 (streaming)",                 257, 128, 1,  1,    3,  0, 1,    0,    true},
      {"gathered q, Wan 1.3B",                   12, 128, 2, 10,   15,  0, 3,    0,    true,  0, true},
      {"gathered, head_dim 6 (pairwise)",         1,   6, 2,  3,    4,  0, 1,    0,    true,  0, true},
  };
  const SelectTokensCase select_cases[] = {
      // name                                    n      k      sketch w_lse  w_stale
      {"n 37, k 1",                              37,     1,     8,   1.0f,  1.0f},
      {"n 37, k n/3",                            37,    12,     8,   1.0f,  1.0f},
      {"n 37, k n",                              37,    37,     8,   1.0f,  1.0f},
      {"n 4096, k 1",                          4096,     1,     8,   1.0f,  1.0f},
      {"n 4096, k n/3",                        4096,  1365,     8,   1.0f,  1.0f},
      {"n 4096, k n",                          4096,  4096,     8,   1.0f,  1.0f},
      {"Wan 1.3B 480p, k 1",                  32760,     1,     8,   1.0f,  1.0f},
      {"Wan 1.3B 480p, k n/3",                32760, 10920,     8,   1.0f,  1.0f},
      {"Wan 1.3B 480p, k n",                  32760, 32760,     8,   1.0f,  1.0f},
      {"Wan 14B 720p, k 1",                   75600,     1,     8,   1.0f,  1.0f},
      {"Wan 14B 720p, k n/3",                 75600, 25200,     8,   1.0f,  1.0f},
      {"Wan 14B 720p, k n",                   75600, 75600,     8,   1.0f,  1.0f},
      {"staleness only: 6 distinct scores",   32760, 10920,     8,   0.0f,  1.0f},
      {"staleness only, n 37",                   37,    12,     8,   0.0f,  1.0f},
      {"negative scores (w_stale -1)",         4096,  2048,     8,   1.0f, -1.0f},
      {"sketch_dim 1, odd n",                  1001,   500,     1,   1.0f,  1.0f},
  };
  const ScatterTokensCase scatter_cases[] = {
      // name                                   n     dim     k      heads sketch residual misalign
      {"Wan 1.3B 480p, half",                 32760,  1536, 16380,   12,    8},
      {"Wan 1.3B 480p, 0.4, no residual",     32760,  1536, 13104,   12,    8,   false},
      {"Wan 14B, half (rows loop)",            1000,  5120,   500,   40,    8},
      {"dim 100 (scalar), odd sizes",            37,   100,    13,    3,    8},
      {"dim 5, k 1",                              7,     5,     1,    1,    3},
      {"every token selected",                   33,    24,    33,    2,    8},
      {"no token selected",                      20,    16,     0,    2,    8},
      {"misaligned 1536 (scalar)",               64,  1536,    21,   12,    8,   true,    1},
  };
  const MergeSplitsCase merge_cases[] = {
      // name                                  batch splits  rows  heads  hd    lse    misalign
      {"Wan 1.3B 480p, 0.4 of the queries",       1,    2, 13104,   12, 128},
      {"batch 2, 3 splits, no lse",               2,    3,   300,   12, 128,  false},
      {"Wan 14B, 4 splits (rows loop)",           1,    4,   100,   40, 128},
      {"head_dim 6 (scalar)",                     2,    2,    37,    3,   6},
      {"misaligned 1536 (scalar)",                1,    2,    64,   12, 128,  true,   1},
      {"one split",                               1,    1,    17,    2,  64},
  };
  // clang-format on
  std::vector<KernelCase> table;
  for (const auto& c : layer_norm_cases)
    table.push_back(
        {std::string("residual_layer_norm: ") + c.name, [c](uint32_t s) { return run_residual_layer_norm(c, s); }});
  for (const auto& c : gather_cases)
    table.push_back({std::string("gather_residual_layer_norm: ") + c.name,
                     [c](uint32_t s) { return run_gather_residual_layer_norm(c, s); }});
  for (const auto& c : rope_cases)
    table.push_back({std::string("rms_norm_rope: ") + c.name, [c](uint32_t s) { return run_rms_norm_rope(c, s); }});
  for (const auto& c : select_cases)
    table.push_back(
        {std::string("select_tokens: ") + c.name, [c](uint32_t s) { return run_select_tokens(c, s); }});
  for (const auto& c : scatter_cases)
    table.push_back(
        {std::string("scatter_tokens: ") + c.name, [c](uint32_t s) { return run_scatter_tokens(c, s); }});

  for (const auto& c : merge_cases)
    table.push_back({std::string("merge_attention_splits: ") + c.name,
                     [c](uint32_t s) { return run_merge_attention_splits(c, s); }});

  for (size_t i = 0; i < table.size(); ++i) table[i].seed = static_cast<uint32_t>(1234 + 7919 * i);
  return table;
}

class KernelsMatchReference : public ::testing::TestWithParam<KernelCase> {};

TEST_P(KernelsMatchReference, OnRandomInputs) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const auto& c = GetParam();
  SCOPED_TRACE(c.name);
  for (const Comparison& comparison : c.run(c.seed)) expect_matches(comparison);
}

// "residual_layer_norm: fused, Wan 1.3B" -> "residual_layer_norm_fused_Wan_1_3B".
std::string case_test_name(const ::testing::TestParamInfo<KernelCase>& info) {
  std::string name;
  for (char ch : info.param.name) {
    const bool word = std::isalnum(static_cast<unsigned char>(ch)) != 0;
    if (word)
      name += ch;
    else if (!name.empty() && name.back() != '_')
      name += '_';
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllOpsAllSizes, KernelsMatchReference, ::testing::ValuesIn(kernel_cases()),
                         case_test_name);

#else

TEST(KernelsMatchReference, AllOpsAllSizes) { GTEST_SKIP() << "no CUDA device (built without CUDA kernels)"; }

#endif  // ASTRAEA_HAS_CUDA_KERNELS

}  // namespace
}  // namespace astraea::kernels
