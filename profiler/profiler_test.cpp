// The profiler's attribution on made-up activity, its fallback when tracing is unavailable, the
// Chrome trace it writes, the timing protocol on a scripted timer, and wall-clock attribution of
// a real token-wise forward on the CPU.
#include "profiler/profiler.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "model/denoiser.h"
#include "model/model_config.h"
#include "model/token_cache.h"
#include "model/torch_compat.h"
#include "model/weights.h"
#include "profiler/timing.h"

namespace astraea::profiler {
namespace {

// A stand-in for CUPTI: `launch` makes one device record, correlated with the external id on top
// of the stack when it was launched, as CUPTI's EXTERNAL_CORRELATION records do.
class FakeSource : public ActivitySource {
 public:
  explicit FakeSource(bool starts = true) : starts_(starts) {}
  bool start(std::string* why_not) override {
    if (!starts_) *why_not = "CUPTI_ERROR_NOT_INITIALIZED in cuptiActivityEnable";
    return starts_;
  }
  void push_external_id(uint64_t id) override { stack_.push_back(id); }
  void pop_external_id() override { stack_.pop_back(); }
  ActivityBatch stop() override { return batch_; }
  void launch(const std::string& name, uint64_t ns, ActivityKind kind = ActivityKind::kKernel) {
    const uint32_t corr = ++next_corr_;
    batch_.records.push_back({kind, name, clock_, clock_ + ns, corr, 7, 0, 0});
    clock_ += ns + 100;
    if (!stack_.empty()) batch_.correlations.push_back({corr, stack_.back()});
  }
  size_t depth() const { return stack_.size(); }

 private:
  bool starts_;
  std::vector<uint64_t> stack_;
  ActivityBatch batch_;
  uint32_t next_corr_ = 0;
  uint64_t clock_ = 1'000'000;
};

const OpTime* find(const Attribution& a, int64_t step, int64_t block, Op op, const std::string& kind = "kernel") {
  for (const auto& t : a.ops) {
    if (t.where == RangePath{step, block, op} && t.kind == kind) return &t;
  }
  return nullptr;
}

TEST(Attribution, MapsRecordsThroughExternalCorrelation) {
  const std::vector<RangePath> paths = {{0, 0, Op::kAttention}, {0, 1, Op::kFeedForward}, {1, 0, Op::kAttention}};
  ActivityBatch b;
  b.records = {{ActivityKind::kKernel, "flash", 0, 1000, 1},  {ActivityKind::kKernel, "flash", 2000, 2500, 2},
               {ActivityKind::kKernel, "gemm", 3000, 3300, 3},  {ActivityKind::kMemcpy, "HtoD", 4000, 4040, 4},
               {ActivityKind::kKernel, "flash", 5000, 5700, 5}, {ActivityKind::kKernel, "stray", 6000, 6010, 6}};
  b.correlations = {{1, 1}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {6, 99}};  // 99: no such range
  const auto a = attribute(b, paths);
  ASSERT_NE(find(a, 0, 0, Op::kAttention), nullptr);
  EXPECT_EQ(find(a, 0, 0, Op::kAttention)->total_ns, 1500u);
  EXPECT_EQ(find(a, 0, 0, Op::kAttention)->count, 2);
  EXPECT_EQ(find(a, 0, 1, Op::kFeedForward)->total_ns, 300u);
  ASSERT_NE(find(a, 0, 1, Op::kFeedForward, "memcpy"), nullptr);
  EXPECT_EQ(find(a, 0, 1, Op::kFeedForward, "memcpy")->total_ns, 40u);
  EXPECT_EQ(find(a, 1, 0, Op::kAttention)->total_ns, 700u);
  EXPECT_EQ(a.attributed_ns, 1500u + 300u + 40u + 700u);
  EXPECT_EQ(a.unattributed_ns, 10u);
  EXPECT_EQ(a.unattributed_count, 1);
  EXPECT_EQ(a.step_ns.at(0), 1840u);
  EXPECT_EQ(a.step_ns.at(1), 700u);
}

TEST(Attribution, RecordsWithoutACorrelationAreUnattributed) {
  ActivityBatch b;
  b.records = {{ActivityKind::kKernel, "k", 10, 30, 1}, {ActivityKind::kMemset, "memset", 40, 45, 2}};
  const auto a = attribute(b, {});
  EXPECT_TRUE(a.ops.empty());
  EXPECT_EQ(a.unattributed_ns, 25u);
  EXPECT_EQ(a.unattributed_count, 2);
}

TEST(ProfilerTest, NestedRangesTagLaunchesWithTheirPath) {
  auto owned = std::make_unique<FakeSource>();
  FakeSource* src = owned.get();
  std::vector<std::string> warnings;
  Profiler p(std::move(owned), [&](const std::string& w) { warnings.push_back(w); });
  p.start();
  src->launch("before any range", 5);
  for (int64_t step = 0; step < 2; ++step) {
    const auto s = ScopedRange::step(step);
    src->launch("embed", 10);
    for (int64_t block = 0; block < 2; ++block) {
      const auto b = ScopedRange::block(block);
      OpSequence op(Op::kProjections);
      src->launch("gemm", 100);
      op.next(Op::kAttention);
      src->launch("attn", 1000 * (step + 1));
      op.next(Op::kFeedForward);
      src->launch("gemm", 200);
    }
  }
  EXPECT_EQ(src->depth(), 0u) << "every push was popped";
  const auto prof = p.stop();
  EXPECT_TRUE(warnings.empty());
  EXPECT_TRUE(prof.device_traced);
  EXPECT_EQ(prof.clock, "cupti");
  const auto& a = prof.attribution;
  EXPECT_EQ(find(a, 1, 1, Op::kAttention)->total_ns, 2000u);
  EXPECT_EQ(find(a, 0, 0, Op::kProjections)->total_ns, 100u);
  EXPECT_EQ(find(a, 0, -1, Op::kNone)->total_ns, 10u);  // inside the step, outside every block
  EXPECT_EQ(a.unattributed_ns, 5u);
  EXPECT_EQ(a.step_ns.at(0), 10u + 2 * (100u + 1000u + 200u));
  EXPECT_EQ(a.step_ns.at(1), 10u + 2 * (100u + 2000u + 200u));
  // Ranges outside steps are timed on the host too: 2 steps, 4 blocks, 12 operations.
  EXPECT_EQ(prof.host_ranges.size(), 18u);
  // Once stopped, ranges reach nobody.
  { const auto s = ScopedRange::step(5); }
  EXPECT_EQ(src->depth(), 0u);
}

TEST(ProfilerTest, ASourceThatFailsWarnsOnceAndFallsBackToWallClock) {
  std::vector<std::string> warnings;
  Profiler p(std::make_unique<FakeSource>(false), [&](const std::string& w) { warnings.push_back(w); });
  p.start();
  {
    const auto s = ScopedRange::step(0);
    const auto b = ScopedRange::block(3);
    const ScopedRange op(Op::kAttention);
  }
  const auto prof = p.stop();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("CUPTI_ERROR_NOT_INITIALIZED"), std::string::npos) << warnings[0];
  EXPECT_FALSE(prof.device_traced);
  EXPECT_EQ(prof.clock, "wall");
  ASSERT_NE(find(prof.attribution, 0, 3, Op::kAttention, "wall"), nullptr);
  EXPECT_EQ(prof.attribution.step_ns.count(0), 1u);
}

TEST(ProfilerTest, TheRealCuptiSourceEitherTracesOrSaysWhyNot) {
  auto source = make_cupti_source();
  if (!source) GTEST_SKIP() << "this build has no CUPTI";
  std::vector<std::string> warnings;
  Profiler p(std::move(source), [&](const std::string& w) { warnings.push_back(w); });
  p.start();
  const bool gpu = compat::cuda_available();
  {
    const auto s = ScopedRange::step(0);
    const ScopedRange op(Op::kAttention);
    if (gpu) {
      auto x = at::ones({1 << 20}, at::TensorOptions().device(at::kCUDA));
      x.mul_(2.0);
      compat::synchronize(x.device());
    }
  }
  const auto prof = p.stop();
  if (!gpu) {
    ASSERT_EQ(warnings.size(), 1u) << "without a GPU, one warning and an untraced pass";
    EXPECT_FALSE(prof.device_traced);
    return;
  }
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  ASSERT_TRUE(prof.device_traced);
  const auto* t = find(prof.attribution, 0, -1, Op::kAttention);
  ASSERT_NE(t, nullptr) << "the multiply's kernel is attributed to its range";
  EXPECT_GT(t->total_ns, 0u);
}

TEST(ChromeTrace, IsValidJsonWithHostAndDeviceEvents) {
  Profile p;
  p.clock = "cupti";
  p.device_traced = true;
  p.paths = {{2, 5, Op::kScatter}};
  p.host_ranges = {{{2, 5, Op::kScatter}, 1000, 5000}, {{2, -1, Op::kNone}, 500, 9000}};
  p.activity.records = {{ActivityKind::kKernel, "scatter_tokens_kernel", 100000, 103000, 11, 7, 0, 0},
                        {ActivityKind::kMemcpy, "memcpy HtoD", 104000, 104500, 12, 7, 0, 4096}};
  p.activity.correlations = {{11, 1}};
  const auto dir = std::filesystem::temp_directory_path() / "astraea_trace_test";
  std::filesystem::create_directories(dir);
  const auto path = (dir / "trace.json").string();
  write_chrome_trace(p, path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const auto doc = nlohmann::json::parse(std::ifstream(path));
  int host = 0, device = 0;
  for (const auto& e : doc.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    (e.at("pid") == 1 ? host : device)++;
    if (e.at("name") == "scatter_tokens_kernel") {
      EXPECT_EQ(e.at("args").at("step"), 2);
      EXPECT_EQ(e.at("args").at("block"), 5);
      EXPECT_EQ(e.at("args").at("op"), "scatter");
      EXPECT_DOUBLE_EQ(e.at("ts").get<double>(), 0.0);
      EXPECT_DOUBLE_EQ(e.at("dur").get<double>(), 3.0);  // microseconds
    }
    if (e.at("name") == "memcpy HtoD") EXPECT_EQ(e.at("args").at("bytes"), 4096);
  }
  EXPECT_EQ(host, 2);
  EXPECT_EQ(device, 2);
  EXPECT_THROW(write_chrome_trace(p, (dir / "no" / "such" / "dir.json").string()), std::runtime_error);
  std::filesystem::remove_all(dir);
}

// Returns scripted samples; each call advances a fake clock by the sample.
class ScriptedTimer : public IntervalTimer {
 public:
  explicit ScriptedTimer(std::vector<double> samples) : samples_(std::move(samples)) {}
  std::string clock() const override { return "scripted"; }
  double time_ms(const std::function<void()>& fn) override {
    fn();
    const double s = samples_[std::min(calls_, samples_.size() - 1)];
    ++calls_;
    now_s += s / 1000.0;
    return s;
  }
  size_t calls_ = 0;
  double now_s = 0;

 private:
  std::vector<double> samples_;
};

TEST(Timing, SummarizesMedianMinMaxAndNoise) {
  const auto s = summarize({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(s.median_ms, 2.5);
  EXPECT_DOUBLE_EQ(s.min_ms, 1);
  EXPECT_DOUBLE_EQ(s.max_ms, 4);
  EXPECT_DOUBLE_EQ(s.mean_ms, 2.5);
  EXPECT_NEAR(s.noise, std::sqrt(5.0 / 3.0) / 2.5, 1e-12);  // sample standard deviation over mean
  EXPECT_DOUBLE_EQ(summarize({7, 1, 5}).median_ms, 5);
  EXPECT_THROW(summarize({}), std::invalid_argument);
}

TEST(Timing, StopsWhenQuietAfterWarmup) {
  // Two warm-up samples (discarded), then steady 10 ms: converges at min_reps.
  ScriptedTimer t({100, 50, 10, 10, 10, 10, 10, 10, 10, 10});
  int calls = 0;
  const auto s = measure([&] { ++calls; }, t, {2, 5, 100, 30.0, 0.02}, [&] { return t.now_s; });
  EXPECT_TRUE(s.converged);
  EXPECT_EQ(s.reps, 5);
  EXPECT_EQ(calls, 7);
  EXPECT_DOUBLE_EQ(s.median_ms, 10);
  EXPECT_DOUBLE_EQ(s.max_ms, 10) << "warm-up samples are not counted";
  EXPECT_EQ(s.clock, "scripted");
}

TEST(Timing, NoisyRunsStopAtTheTimeLimitOrTheRepLimit) {
  std::vector<double> noisy;
  for (int i = 0; i < 1000; ++i) noisy.push_back(i % 2 ? 100.0 : 300.0);
  ScriptedTimer t(noisy);
  const auto by_time = measure([] {}, t, {0, 3, 1000, 1.0, 0.02}, [&] { return t.now_s; });
  EXPECT_FALSE(by_time.converged);
  EXPECT_GE(by_time.reps, 5);  // 1 s of 100-300 ms samples
  EXPECT_LE(by_time.reps, 7);
  ScriptedTimer t2(noisy);
  const auto by_reps = measure([] {}, t2, {0, 3, 8, 1e9, 0.02}, [&] { return t2.now_s; });
  EXPECT_FALSE(by_reps.converged);
  EXPECT_EQ(by_reps.reps, 8);
  EXPECT_THROW(measure([] {}, t2, {0, 0, 8, 1, 0.02}), std::invalid_argument);
}

// A machine whose load jumps part-way through: every sample after the first `quiet_samples` (of
// all variants together) costs `factor` times more. Variants differ only in their quiet cost.
struct LoadedMachine {
  double now_s = 0;
  int quiet_samples = 0;
  double factor = 1;
  int taken = 0;
  std::vector<int> calls;
  Sampler variant(size_t i, double quiet_ms) {
    if (calls.size() <= i) calls.resize(i + 1);
    return [this, i, quiet_ms] {
      ++calls[i];
      const double ms = quiet_ms * (taken++ >= quiet_samples ? factor : 1.0);
      now_s += ms / 1000.0;
      return ms;
    };
  }
};

TEST(Timing, InterleavedRoundsTimeEveryVariantOnceInAShuffledOrder) {
  std::vector<std::vector<size_t>> orders;
  std::vector<size_t> round;
  std::vector<Sampler> variants;
  for (size_t i = 0; i < 4; ++i) {
    variants.push_back([&, i] {
      round.push_back(i);
      if (round.size() == 4) orders.push_back(std::exchange(round, {}));
      return 10.0 + static_cast<double>(i);
    });
  }
  int callbacks = 0;
  const auto stats = measure_interleaved(variants, {1, 6, 6, 1e9, 0.0}, 7, {},
                                         [&](int r, const std::vector<TimingStats>& s) {
                                           EXPECT_EQ(r, ++callbacks);
                                           EXPECT_EQ(s.size(), 4u);
                                         });
  ASSERT_EQ(orders.size(), 7u);  // one warm-up round, then six timed
  std::set<std::vector<size_t>> distinct;
  for (auto order : orders) {
    distinct.insert(order);
    std::sort(order.begin(), order.end());
    EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3})) << "every variant once a round";
  }
  EXPECT_GT(distinct.size(), 1u) << "the order is shuffled from round to round";
  EXPECT_EQ(callbacks, 6);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(stats[i].reps, 6);
    EXPECT_DOUBLE_EQ(stats[i].median_ms, 10.0 + static_cast<double>(i));
    EXPECT_FALSE(stats[i].converged) << "a noise target of 0 cannot be met";
  }
}

TEST(Timing, ALoadSpikeFallsOnEveryVariantAlike) {
  // Quiet costs 30, 50, 70, 100 ms; after two rounds' worth of samples the machine gets 10x
  // slower. Timed one after the other (the old protocol), the later variants would take all of the
  // spike; interleaved, the medians keep their order and their ratios.
  LoadedMachine m{0, 8, 10.0, 0, {}};
  const std::vector<double> quiet{30, 50, 70, 100};
  std::vector<Sampler> variants;
  for (size_t i = 0; i < quiet.size(); ++i) variants.push_back(m.variant(i, quiet[i]));
  const auto stats = measure_interleaved(variants, {0, 5, 40, 2.0, 0.02}, 3, [&] { return m.now_s; });
  for (size_t i = 1; i < stats.size(); ++i) {
    EXPECT_GT(stats[i].median_ms, stats[i - 1].median_ms) << "variant " << i;
    EXPECT_NEAR(stats[i].median_ms / stats[0].median_ms, quiet[i] / quiet[0], 1e-9);
    EXPECT_EQ(stats[i].reps, stats[0].reps) << "every variant gets the same rounds";
  }
  EXPECT_FALSE(stats[0].converged) << "samples on both sides of the spike are noisy";
  EXPECT_GE(m.now_s, 7.9) << "the time limit is per variant: 4 variants x 2 s";
}

TEST(Timing, InterleavingStopsWhenEveryVariantIsQuiet) {
  LoadedMachine m{0, 1 << 30, 1, 0, {}};
  const auto stats = measure_interleaved({m.variant(0, 10), m.variant(1, 20)}, {2, 5, 100, 30.0, 0.02}, 0,
                                         [&] { return m.now_s; });
  EXPECT_EQ(m.calls[0], 7);  // 2 warm-up + 5 rounds
  EXPECT_EQ(m.calls[1], 7);
  EXPECT_TRUE(stats[0].converged);
  EXPECT_TRUE(stats[1].converged);
  EXPECT_THROW(measure_interleaved({}, {}, 0), std::invalid_argument);
}

TEST(Timing, EnvironmentNamesTheDeviceAndVersions) {
  const auto e = environment(at::Device(at::kCPU));
  EXPECT_TRUE(e.contains("libtorch"));
  EXPECT_TRUE(e.contains("device"));
  EXPECT_GE(e.at("host_threads").get<int>(), 1);
}

// A real token-wise forward of a random tiny model on the CPU: every block's work lands on the
// operations the issue names, in wall-clock time.
TEST(ProfilerTest, WallClockAttributionOfATokenwiseForward) {
  const auto config = model_preset("tiny");
  const auto owned = make_denoiser(config, random_weights(config, 3, at::kCPU, at::kFloat), at::kFloat);
  const Denoiser& model = *owned;
  const auto shape = video_shape(config, 4, 16, 16);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const auto x = at::randn({config.in_channels, shape.latent_f, shape.latent_h, shape.latent_w}, gen);
  const auto ctx = model.embed_context(model.encode_prompt("a red circle moving left on a gray background"));
  TokenEngineState state;
  model.forward_tokenwise(x, 900.0, ctx, 1.0, {}, state);
  Profiler p(nullptr, [](const std::string& w) { FAIL() << "no warning without a source: " << w; });
  p.start();
  {
    const auto s = ScopedRange::step(1);
    model.forward_tokenwise(x, 800.0, ctx, 0.5, {}, state);
  }
  const auto prof = p.stop();
  EXPECT_EQ(prof.clock, "wall");
  for (int64_t block = 0; block < config.layers; ++block) {
    for (Op op : {Op::kSelection, Op::kGather, Op::kProjections, Op::kAttention, Op::kFeedForward, Op::kScatter}) {
      const auto* t = find(prof.attribution, 1, block, op, "wall");
      ASSERT_NE(t, nullptr) << "block " << block << " " << op_name(op);
      EXPECT_GT(t->total_ns, 0u);
    }
  }
  // The operations cover most of the step (the rest: embedding, head, range overhead).
  const double step = static_cast<double>(prof.attribution.step_ns.at(1));
  EXPECT_GT(static_cast<double>(prof.attribution.attributed_ns), 0.5 * step);
  EXPECT_LE(static_cast<double>(prof.attribution.attributed_ns), step);
}

}  // namespace
}  // namespace astraea::profiler
