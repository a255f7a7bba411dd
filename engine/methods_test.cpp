// The method registry and the guided step: methods by name with checked parameters, dense and
// ASTRAEA through the one interface, a guided step against hand-written guidance, skipped steps,
// and a schedule the method refuses before it runs.
#include "engine/methods.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "engine/guided_step.h"
#include "engine/tiny_model_fixture.h"
#include "model/sampler.h"
#include "model/wan/dit.h"

namespace astraea::engine {
namespace {

TEST(Methods, TheRegistryNamesEveryMethodWithItsKnobs) {
  std::vector<std::string> names;
  for (const auto& m : methods()) {
    names.push_back(m.name);
    EXPECT_FALSE(m.summary.empty()) << m.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"dense", "astraea", "teacache", "magcache", "easycache",
                                             "fbcache", "pab", "toca"}));
  EXPECT_EQ(make_method("dense")->name(), "dense");
  const auto a = make_method("astraea:budget=0.5,dense_steps=3,tile=4");
  EXPECT_EQ(a->name(), "astraea");
  EXPECT_EQ(a->params().at("budget"), 0.5);
  EXPECT_EQ(a->params().at("dense_steps"), 3);
  EXPECT_EQ(a->params().at("tile"), 4);
  EXPECT_EQ(a->params().at("w_stale"), 0.1);  // the default
}

TEST(Methods, BadSpecsAreNamed) {
  auto message = [](const std::string& spec) {
    try {
      make_method(spec);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message("nosuch"),
            "method 'nosuch' is not registered (known: dense, astraea, teacache, magcache, easycache, "
            "fbcache, pab, toca)");
  EXPECT_NE(message("astraea:budgit=0.5").find("has no parameter 'budgit'"), std::string::npos);
  EXPECT_NE(message("astraea:budget").find("'budget' is not KEY=VALUE"), std::string::npos);
  EXPECT_NE(message("astraea:budget=2").find("budget=2 is not a number in [0, 1]"), std::string::npos);
  EXPECT_NE(message("astraea:budget=0.5,budget=0.4").find("given twice"), std::string::npos);
  EXPECT_NE(message("astraea:dense_steps=2").find("needs budget=B or schedule=FILE"), std::string::npos);
  EXPECT_NE(message("astraea:schedule=/no/such.json").find("/no/such.json"), std::string::npos);
  EXPECT_NE(message("dense:budget=1").find("it takes: none"), std::string::npos);
}

TEST(Methods, AKnobWithAlternativesExpandsToOneMethodEach) {
  EXPECT_EQ(expand_method_spec("fbcache:threshold=0.1"), (std::vector<std::string>{"fbcache:threshold=0.1"}));
  EXPECT_EQ(expand_method_spec("dense"), (std::vector<std::string>{"dense"}));
  EXPECT_EQ(expand_method_spec("pab:self_range=2|3,cross_range=4,self_hi=700|800"),
            (std::vector<std::string>{
                "pab:self_range=2,cross_range=4,self_hi=700", "pab:self_range=2,cross_range=4,self_hi=800",
                "pab:self_range=3,cross_range=4,self_hi=700", "pab:self_range=3,cross_range=4,self_hi=800"}));
  EXPECT_THROW(expand_method_spec("fbcache:threshold=0.1||0.2"), std::invalid_argument);
}

TEST(Methods, AScheduleForAnotherRunIsRefusedBeforeItRuns) {
  TokenBudgetSchedule s;
  s.model = "tiny";
  s.budgets = {1, 0.5, 0.5};
  const auto a = make_astraea(s);
  EXPECT_EQ(a->can_run("tiny", 3), "");
  EXPECT_NE(a->can_run("tiny", 4), "") << "three budgets for four steps";
  EXPECT_NE(a->can_run("wan2.1-1.3b", 3), "") << "made for another preset";
  EXPECT_EQ(make_method("dense")->can_run("tiny", 4), "");
}

TEST(GuidedStepTest, DenseIsHandWrittenGuidanceAndCountsEveryToken) {
  TinyModelFixture f;
  const auto uncond = f.uncond();
  GuidedStep step(f.model, make_method("dense"), 5.0);
  const auto v = step(f.x, {0, 2, 700.0}, f.ctx, uncond);
  const auto expected =
      classifier_free_guidance(f.model.forward(f.x, 700.0, f.ctx), f.model.forward(f.x, 700.0, uncond), 5.0);
  EXPECT_TRUE(at::equal(v, expected));
  EXPECT_EQ(step.model_calls(), 2);
  EXPECT_EQ(step.computed_tokens(), 2 * f.c.layers * 64);
  EXPECT_EQ(step.cache_bytes(), 0);
  GuidedStep unguided(f.model, make_method("dense"), 1.0);
  EXPECT_TRUE(at::equal(unguided(f.x, {0, 2, 700.0}, f.ctx, uncond), f.model.forward(f.x, 700.0, f.ctx)));
  EXPECT_EQ(unguided.model_calls(), 1);
}

TEST(GuidedStepTest, AstraeaKeepsOneCachePerBranchAndSkipsZeroBudgetSteps) {
  TinyModelFixture f;
  const auto uncond = f.uncond();
  TokenBudgetSchedule s;
  s.model = "tiny";
  s.budgets = {1, 0.5, 0};
  GuidedStep step(f.model, make_astraea(s), 5.0);
  // Budget 1: the dense guided step exactly, and both branches' caches filled.
  const auto first = step(f.x, {0, 3, 900.0}, f.ctx, uncond);
  const auto dense =
      classifier_free_guidance(f.model.forward(f.x, 900.0, f.ctx), f.model.forward(f.x, 900.0, uncond), 5.0);
  EXPECT_TRUE(at::equal(first, dense));
  EXPECT_GT(step.cache_bytes(), 0);
  // Budget 0.5: half the tokens of each branch, from each branch's own cache.
  const int64_t before = step.computed_tokens();
  const auto second = step(f.x * 0.9, {1, 3, 600.0}, f.ctx, uncond);
  EXPECT_EQ(step.computed_tokens() - before, 2 * f.c.layers * 32);
  EXPECT_FALSE(at::equal(second, first));
  // Budget 0: no model call, the last guided output.
  const auto third = step(f.x * 0.8, {2, 3, 300.0}, f.ctx, uncond);
  EXPECT_TRUE(at::equal(third, second));
  EXPECT_EQ(step.model_calls(), 4);
  EXPECT_EQ(step.skipped_steps(), 1);
  // A method that skips its first step has nothing to reuse.
  s.budgets = {0, 1, 1};
  GuidedStep skips_first(f.model, make_astraea(s), 5.0);
  EXPECT_THROW(skips_first(f.x, {0, 3, 900.0}, f.ctx, uncond), std::invalid_argument);
}

}  // namespace
}  // namespace astraea::engine
