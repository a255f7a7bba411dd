// CPU references against hand-computed values (always run), and every kernel against its CPU
// reference on random inputs (one table-driven test; skips without a CUDA device).
#include <gtest/gtest.h>

#include <algorithm>
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
#include <vector>

#include "astraea/config.h"
#include "kernels/residual_layer_norm.cuh"
#include "kernels/rms_norm_rope.cuh"
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

TEST(KernelsMatchReference, AllOpsAllSizes) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
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
  // clang-format on
  struct Entry {
    std::string name;
    std::function<std::vector<Comparison>(uint32_t)> run;
  };
  std::vector<Entry> table;
  for (const auto& c : layer_norm_cases)
    table.push_back(
        {std::string("residual_layer_norm: ") + c.name, [c](uint32_t s) { return run_residual_layer_norm(c, s); }});
  for (const auto& c : rope_cases)
    table.push_back({std::string("rms_norm_rope: ") + c.name, [c](uint32_t s) { return run_rms_norm_rope(c, s); }});

  for (size_t i = 0; i < table.size(); ++i) {
    SCOPED_TRACE(table[i].name);
    for (const Comparison& c : table[i].run(static_cast<uint32_t>(1234 + 7919 * i))) expect_matches(c);
  }
}

#else

TEST(KernelsMatchReference, AllOpsAllSizes) { GTEST_SKIP() << "no CUDA device (built without CUDA kernels)"; }

#endif  // ASTRAEA_HAS_CUDA_KERNELS

}  // namespace
}  // namespace astraea::kernels
