// The peer methods (docs/peers.md): each rule against a hand-computed case on constructed inputs,
// the model seam they run through (a stand-in or a broadcast of unchanged inputs gives the dense
// output exactly), and, for every registered method, work counted as it was done.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "engine/guided_step.h"
#include "engine/methods.h"
#include "engine/schedule.h"
#include "engine/step_cache.h"
#include "engine/step_costs.h"
#include "engine/tiny_model_fixture.h"

namespace astraea::engine {
namespace {

StackPoint point(int64_t block, double value) {
  StackPoint p;
  p.block = block;
  p.x = at::full({1, 4, 2}, value);
  return p;
}

// One call of a residual-caching branch by hand: the stack's input X0 before block 0, X1 before
// block 1, and (when it computes every block) OUT after the last of LAYERS. Returns the stand-in
// residual's value, or NaN when the call computed.
double drive(ResidualCache& b, const CallInfo& call, double x0, double x1, double out, int64_t layers = 4) {
  b.begin_call(call);
  for (int64_t i = 0; i < layers; ++i) {
    auto r = b.before_block(point(i, i == 0 ? x0 : x1));
    if (r.defined()) return r.mean().item<double>();
  }
  b.after_stack(at::full({1, 4, 2}, out));
  return NAN;
}

TEST(FirstBlockCache, ReusesWhileTheFirstResidualStaysNearTheLastComputedOne) {
  auto m = make_method("fbcache:threshold=0.1,warmup=1");
  auto state = m->new_branch();
  auto& b = dynamic_cast<ResidualCache&>(*state);
  // Step 0 computes (warm-up): first residual 1, the rest adds 2 (output 3 from block 1's input 1).
  EXPECT_TRUE(std::isnan(drive(b, {0, 10, 900}, 0, 1, 3)));
  // Step 1: first residual 1.05, 5% from 1: the kept residual 2 stands in.
  EXPECT_DOUBLE_EQ(drive(b, {1, 10, 800}, 0, 1.05, 0), 2.0);
  // Step 2: 1.08 is 8% from the last *computed* first residual (1), not 3% from 1.05: reused.
  EXPECT_DOUBLE_EQ(drive(b, {2, 10, 700}, 0, 1.08, 0), 2.0);
  // Step 3: 1.2 is 20% away: computed, and its residuals are kept (4.2 - 1.2 = 3).
  EXPECT_TRUE(std::isnan(drive(b, {3, 10, 600}, 0, 1.2, 4.2)));
  // Step 4: 1.25 is 4.2% from 1.2: the new residual 3 stands in.
  EXPECT_NEAR(drive(b, {4, 10, 500}, 0, 1.25, 0), 3.0, 1e-6);
  EXPECT_EQ(b.reused_calls(), 0) << "reused_calls counts model calls through run(), not hand-driven ones";
}

TEST(FirstBlockCache, AtMostMaxSkipsInARow) {
  auto m = make_method("fbcache:threshold=0.5,max_skips=2");
  auto state = m->new_branch();
  auto& b = dynamic_cast<ResidualCache&>(*state);
  EXPECT_TRUE(std::isnan(drive(b, {0, 10, 900}, 0, 1, 3)));
  EXPECT_FALSE(std::isnan(drive(b, {1, 10, 800}, 0, 1, 0)));
  EXPECT_FALSE(std::isnan(drive(b, {2, 10, 700}, 0, 1, 0)));
  EXPECT_TRUE(std::isnan(drive(b, {3, 10, 600}, 0, 1, 3))) << "a third reuse in a row";
}

// Two calls on the same input: a method that reuses gives the dense output exactly, because what it
// reuses is what it would have computed.
void expect_exact_reuse(const std::string& spec, const std::string& second_action) {
  TinyModelFixture f;
  GuidedStep step(f.model, make_method(spec), 1.0);
  const auto dense = f.model.forward(f.x, 500.0, f.ctx);
  const auto a = step(f.x, {0, 10, 500.0}, f.ctx, f.ctx);
  const auto b = step(f.x, {1, 10, 500.0}, f.ctx, f.ctx);
  EXPECT_TRUE(at::allclose(a, dense, 1e-5, 1e-5)) << spec;
  EXPECT_TRUE(at::allclose(b, dense, 1e-4, 1e-4))
      << spec << ": max diff " << (b - dense).abs().max().item<double>();
  ASSERT_EQ(step.step_actions().size(), 2u);
  EXPECT_EQ(step.step_actions()[0], "dense") << spec;
  EXPECT_EQ(step.step_actions()[1], second_action) << spec;
  // On other inputs, the calls that reuse are not the dense output there (one of the next two
  // reuses, whatever the method's period).
  bool differs = false;
  for (int64_t i = 2; i < 4; ++i) {
    const auto x = f.x * (0.5 / static_cast<double>(i));
    differs = differs || !at::allclose(step(x, {i, 10, 500.0}, f.ctx, f.ctx),
                                       f.model.forward(x, 500.0, f.ctx), 1e-4, 1e-4);
  }
  EXPECT_TRUE(differs) << spec;
}

TEST(PeerMethods, ReusingWhatWouldBeComputedGivesTheDenseOutput) {
  expect_exact_reuse("fbcache:threshold=0.5", "reuse@1");
  expect_exact_reuse("pab:self_range=2,cross_range=2,self_lo=0,self_hi=1000,cross_lo=0,cross_hi=1000",
                     "pab:6,6");
  expect_exact_reuse("pab:self_range=2,cross_range=1,self_lo=0,self_hi=1000", "pab:6,0");
  expect_exact_reuse("pab:self_range=1,cross_range=3,cross_lo=0,cross_hi=1000", "pab:0,6");
  expect_exact_reuse("toca:ratio=0.5,interval=10,warmup=1", "toca:0.5");
}

// ASTRAEA's mixed schedule: a reusing step stands in for the blocks with the last residual, so on
// an unchanged input it gives the dense output, and it runs no block.
TEST(PeerMethods, AReusingStepOfAScheduleStandsInWithTheLastResidual) {
  TinyModelFixture f;
  TokenBudgetSchedule s;
  s.model = "tiny";
  s.budgets = {1, kReuseBudget, kReuseBudget};
  GuidedStep step(f.model, make_astraea(s), 1.0);
  const auto dense = f.model.forward(f.x, 500.0, f.ctx);
  step(f.x, {0, 3, 500.0}, f.ctx, f.ctx);
  const int64_t after_first = step.computed_tokens();
  EXPECT_TRUE(at::allclose(step(f.x, {1, 3, 500.0}, f.ctx, f.ctx), dense, 1e-4, 1e-4));
  const auto other = step(f.x * 0.5, {2, 3, 400.0}, f.ctx, f.ctx);
  EXPECT_FALSE(at::allclose(other, f.model.forward(f.x * 0.5, 400.0, f.ctx), 1e-3, 1e-3));
  EXPECT_EQ(step.computed_tokens(), after_first) << "no block ran";
  EXPECT_EQ(step.step_actions(), (std::vector<std::string>{"dense", "reuse@0", "reuse@0"}));
}

TEST(Pab, BroadcastsOnlyInsideItsWindowAndEveryRangeCalls) {
  TinyModelFixture f;
  GuidedStep step(f.model, make_method("pab:self_range=3,self_lo=200,self_hi=800,cross_range=1"), 1.0);
  const double timesteps[] = {950, 800, 700, 600, 500, 150};
  for (int64_t i = 0; i < 6; ++i) step(f.x * (1.0 - 0.1 * i), {i, 6, timesteps[i]}, f.ctx, f.ctx);
  // Calls 0..5 count 0..5; inside [200, 800] a call reuses unless its count divides by 3.
  EXPECT_EQ(step.step_actions(),
            (std::vector<std::string>{"dense", "pab:6,0", "pab:6,0", "dense", "pab:6,0", "dense"}));
  EXPECT_EQ(step.computed_tokens(), 6 * f.c.layers * 64) << "PAB runs every block";
}

// What each action word says a call computed, as a share of a dense call.
double action_share(const std::string& action, int64_t layers) {
  if (action == "dense" || action.rfind("pab:", 0) == 0) return 1.0;
  if (action == "reuse") return 0.0;
  if (action.rfind("reuse@", 0) == 0) return std::stod(action.substr(6)) / static_cast<double>(layers);
  return -1;  // tokens:B: depends on rounding, checked against the budget below
}

TEST(PeerMethods, EveryMethodRunsAndCountsTheWorkItsActionsSay) {
  const std::vector<std::string> specs = {"dense",
                                          "astraea:budget=0.5",
                                          "teacache:threshold=1,coefficients=identity",
                                          "magcache:threshold=0.3,K=3",
                                          "easycache:threshold=2,warmup=0.25",
                                          "fbcache:threshold=2",
                                          "pab",
                                          "toca:ratio=0.25"};
  for (const auto& spec : specs) {
    GenerateOptions o;
    o.weights = "random";
    o.steps = 8;
    o.frames = 4;
    o.height = 16;
    o.width = 16;
    o.method = make_method(spec);
    const auto r = generate(o);
    int64_t reduced = 0;
    for (const auto& a : r.step_actions) reduced += a != "dense+dense";
    if (spec != "dense") EXPECT_GT(reduced, 0) << spec << " computed every step densely";
    ASSERT_EQ(r.step_actions.size(), 8u) << spec;
    double share = 0;
    bool exact = true;
    for (const auto& step : r.step_actions) {
      if (step == "skip") continue;
      const auto plus = step.find('+');
      ASSERT_NE(plus, std::string::npos) << spec << ": a guided step has two calls: " << step;
      for (const auto& a : {step.substr(0, plus), step.substr(plus + 1)}) {
        const double s = action_share(a, r.config.layers);
        exact = exact && s >= 0;
        share += s >= 0 ? s : std::stod(a.substr(a.find(':') + 1));  // tokens:B, toca:R
      }
    }
    share /= 16.0;
    EXPECT_NEAR(r.token_share, share, exact ? 1e-9 : 0.05) << spec;
  }
}

TEST(MagCache, ReusesWhileTheAccumulatedRatioErrorStaysUnderTheThresholdAndAtMostK) {
  // Calibrated ratios 1, 0.9, 0.95, 0.99, 0.99, 0.99 over 6 steps; no retention; threshold 0.3, K 2.
  const auto file =
      (std::filesystem::temp_directory_path() / ("mag_" + std::to_string(::getpid()) + ".json")).string();
  std::ofstream(file) << R"({"cond": [1, 0.9, 0.95, 0.99, 0.99, 0.99]})";
  auto m = make_method("magcache:ratios=" + file + ",threshold=0.3,K=2,retention=0");
  auto state = m->new_branch();
  auto& b = dynamic_cast<ResidualCache&>(*state);
  // Step 0 computes (nothing kept; it still accumulates 1 - 1 = 0 and resets).
  EXPECT_TRUE(std::isnan(drive(b, {0, 6, 900}, 0, 0, 2, 1)));
  // Step 1: product 0.9, error 0.1: reused. Step 2: product 0.855, error 0.1 + 0.145 = 0.245: reused.
  EXPECT_FALSE(std::isnan(drive(b, {1, 6, 800}, 0, 0, 0, 1)));
  EXPECT_FALSE(std::isnan(drive(b, {2, 6, 700}, 0, 0, 0, 1)));
  // Step 3: error 0.245 + (1 - 0.846) = 0.399, and a third in a row (K = 2): computed, the sums restart.
  EXPECT_TRUE(std::isnan(drive(b, {3, 6, 600}, 0, 0, 2, 1)));
  // Step 4: 0.99, error 0.01: reused. Step 5: 0.9801, error 0.01 + 0.0199: reused.
  EXPECT_FALSE(std::isnan(drive(b, {4, 6, 500}, 0, 0, 0, 1)));
  EXPECT_FALSE(std::isnan(drive(b, {5, 6, 400}, 0, 0, 0, 1)));
  std::filesystem::remove(file);
  // Calibrated at 6 steps, run at 11: the nearest calibrated step, as MagCache interpolates.
  EXPECT_DOUBLE_EQ(magcache_ratio({1, 0.9, 0.95, 0.99, 0.99, 0.99}, 3, 11), 0.95);  // round(3 * 0.5) = 2
}

TEST(TeaCache, AccumulatesTheRescaledChangeOfTheTimestepEmbedding) {
  // The published plain polynomial at 0: its constant term.
  EXPECT_NEAR(teacache_rescale(false, 0.0), 1.37887774e-01, 1e-12);
  EXPECT_NEAR(teacache_rescale(true, 0.0), -4.99875664e-02, 1e-12);
  // identity: the rule on the raw relative L1 change of e; e = 1, 1.1, 1.2, 1.5 per element.
  auto m = make_method("teacache:threshold=0.2,coefficients=identity");
  auto state = m->new_branch();
  auto& b = dynamic_cast<ResidualCache&>(*state);
  auto call = [&](int64_t step, double e) {
    StackPoint p = point(0, 0);
    p.e = at::full({1, 4}, e);
    p.e0 = p.e;
    b.begin_call({step, 10, 900.0 - 50 * step});
    auto r = b.before_block(p);
    if (r.defined()) return true;
    for (int64_t i = 1; i < 3; ++i) b.before_block(point(i, 0));
    b.after_stack(at::full({1, 4, 2}, 1.0));
    return false;
  };
  EXPECT_FALSE(call(0, 1.0));   // the first step is computed
  EXPECT_TRUE(call(1, 1.1));    // 0.1 < 0.2: reused
  EXPECT_TRUE(call(2, 1.2));    // 0.1 + 0.1 / 1.1 = 0.191: reused (compared with the last call's e)
  EXPECT_FALSE(call(3, 1.5));   // + 0.3 / 1.2 = 0.441: computed, the sum starts again
  EXPECT_TRUE(call(4, 1.53));   // 0.03 / 1.5 = 0.02: reused
  EXPECT_FALSE(call(9, 1.54));  // the last step is computed
}

TEST(ToCa, ScoresByNormalisedEntropyPlusStaleness) {
  // Entropies 0, 1, 3 -> 1 + H = 1, 2, 4, norm sqrt(21); stale 0, 9, 0 over interval 3, weight 0.25.
  const auto s = toca_score(at::tensor({0.0, 1.0, 3.0}), at::tensor({0.0, 9.0, 0.0}), 3, 0.25);
  const double n = std::sqrt(21.0);
  EXPECT_NEAR(s[0].item<double>(), 1 / n, 1e-6);
  EXPECT_NEAR(s[1].item<double>(), 2 / n + 0.75, 1e-6);
  EXPECT_NEAR(s[2].item<double>(), 4 / n, 1e-6);
  EXPECT_GT(s[1].item<double>(), s[2].item<double>()) << "a stale token overtakes a higher entropy";
}

TEST(ToCa, AFullCallEveryIntervalCallsAndTheRatioBetween) {
  TinyModelFixture f;
  GuidedStep step(f.model, make_method("toca:ratio=0.25,interval=3,warmup=2"), 1.0);
  for (int64_t i = 0; i < 7; ++i) step(f.x * (1.0 - 0.05 * i), {i, 7, 900.0 - 100 * i}, f.ctx, f.ctx);
  // Steps 0, 1 warm up; then a full call every third call.
  EXPECT_EQ(step.step_actions(), (std::vector<std::string>{"dense", "dense", "toca:0.25", "toca:0.25",
                                                           "dense", "toca:0.25", "toca:0.25"}));
  EXPECT_EQ(step.computed_tokens(), f.c.layers * (3 * 64 + 4 * 16));
}

TEST(StepCosts, PricesEveryActionFromTheMeasuredPoints) {
  const nlohmann::json j = {{"tokens", 100},
                            {"layers", 11},
                            {"dense_ms", 100},
                            {"reuse_ms", 0},
                            {"stand_in_ms", 2},
                            {"first_block_ms", 11},
                            {"pab_self_ms", 70},
                            {"pab_cross_ms", 90},
                            {"pab_both_ms", 62},
                            {"tokens_ms", {{"0.2", 30}, {"0.6", 70}}},
                            {"toca_ms", {{"0.1", 40}, {"0.3", 50}}}};
  const auto c = StepCosts::from_json(j, "costs.json");
  EXPECT_DOUBLE_EQ(c.call_ms("dense"), 100);
  EXPECT_DOUBLE_EQ(c.call_ms("reuse"), 0);
  EXPECT_DOUBLE_EQ(c.call_ms("reuse@0"), 2);
  EXPECT_DOUBLE_EQ(c.call_ms("reuse@1"), 11);
  EXPECT_DOUBLE_EQ(c.call_ms("reuse@6"), 11 + 5.0 / 10.0 * 89);  // half way from block 1 to 11
  EXPECT_DOUBLE_EQ(c.call_ms("pab:11,0"), 70);
  EXPECT_DOUBLE_EQ(c.call_ms("pab:0,11"), 90);
  EXPECT_DOUBLE_EQ(c.call_ms("pab:11,11"), 62);
  EXPECT_NEAR(c.call_ms("pab:0,0"), 100, 1e-12);
  EXPECT_DOUBLE_EQ(c.call_ms("tokens:0.4"), 50);  // between 0.2 and 0.6
  EXPECT_DOUBLE_EQ(c.call_ms("tokens:0.8"), 85);  // between 0.6 and dense
  EXPECT_DOUBLE_EQ(c.call_ms("tokens:0.1"), 15);  // below the lowest: proportional
  EXPECT_DOUBLE_EQ(c.run_ms({"dense+dense", "skip", "reuse@1+reuse", "tokens:0.2+tokens:0.6"}), 311);
  EXPECT_DOUBLE_EQ(c.call_ms("toca:0.2"), 45);
  EXPECT_DOUBLE_EQ(c.call_ms("toca:0.5"), 60);  // past the last: the same line
  EXPECT_THROW(c.call_ms("tokens:1.5"), std::invalid_argument);
  EXPECT_THROW(c.call_ms("reuse@12"), std::invalid_argument);
  EXPECT_THROW(c.call_ms("jump"), std::invalid_argument);
  auto bad = j;
  bad["first_block_ms"] = -1;
  try {
    StepCosts::from_json(bad, "costs.json");
    FAIL() << "a negative time was taken";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "costs.json: field 'first_block_ms' is not a positive time");
  }
}

}  // namespace
}  // namespace astraea::engine
