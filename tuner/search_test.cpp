// The tuner's search on synthetic problems: grids, the latency model, repair, and both searches
// (reproducible, never evaluating a genome twice, improving, staying within the target).
#include "tuner/search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <set>

#include "engine/schedule.h"

namespace astraea::tuner {
namespace {

// Measured-looking: a fixed 5 ms plus 95 ms times the budget.
LatencyModel linear_model() { return LatencyModel({{0.3, 33.5}, {0.5, 52.5}, {0.7, 71.5}, {1.0, 100.0}}); }

TEST(SearchSpace, LevelsFollowTheGrid) {
  SearchSpace s;
  EXPECT_EQ(s.levels(), (std::vector<double>{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}));
  s.min_budget = 0.3;
  s.grid = 0.25;
  EXPECT_EQ(s.levels(), (std::vector<double>{0.5, 0.75, 1}));
  s.grid = 0.3;
  EXPECT_THROW(s.validate(), std::invalid_argument);
  s.grid = 0.1;
  s.dense_steps = 31;
  EXPECT_THROW(s.validate(), std::invalid_argument);
}

// The mixed genome: a reusing step sits between a skip and the lowest budget, in cost and in the
// levels that repair and mutation step along.
TEST(SearchSpace, TheMixedGenomeAddsAReusingStepBetweenSkipAndTheLowestBudget) {
  SearchSpace s;
  s.grid = 0.25;
  s.step_cache = true;
  EXPECT_EQ(s.levels(), (std::vector<double>{0, kReuseBudget, 0.25, 0.5, 0.75, 1}));
  s.min_budget = 0.5;
  EXPECT_EQ(s.levels(), (std::vector<double>{kReuseBudget, 0.5, 0.75, 1}));
  auto model = linear_model();
  model.set_reuse_ms(2.0);
  EXPECT_DOUBLE_EQ(model.step_ms(kReuseBudget), 2.0);
  EXPECT_DOUBLE_EQ(model.step_ms(0), 0.0);
  EXPECT_DOUBLE_EQ(model.cost_ms({1, kReuseBudget, 0}), 100.0 + 2.0);
  // Repair lowers a 0.25 step to a reusing one before skipping: one dense step (100 ms) and three
  // of 0.25 (28.75 ms each) = 186.25 ms against 400 / 3 = 133.3 ms: two steps go to reuse (2 ms).
  s = SearchSpace{4, 1, 0.25, 0.0, true};
  std::mt19937_64 rng(1);
  Genome g{1, 0.25, 0.25, 0.25};
  const Target t{Target::Kind::kSpeedup, 3.0};
  ASSERT_TRUE(repair(g, s, model, t, rng));
  EXPECT_LE(model.cost_ms(g), 400.0 / 3 + 1e-9);
  int reused = 0;
  for (size_t i = 1; i < g.size(); ++i) reused += g[i] == kReuseBudget;
  EXPECT_GE(reused, 1) << "a step went to reuse, not straight to a skip";
}

TEST(LatencyModelTest, AnInvertedProfileFallsBackToTheWorkProportionalModel) {
  // The busy-machine profile that stopped the demo: 0.5 and 0.3 timed during a load spike.
  const std::map<double, LatencyPoint> spiked{
      {1.0, {428, 0.02}}, {0.7, {313, 0.03}}, {0.5, {5679, 0.147}}, {0.3, {3826, 0.63}}};
  EXPECT_EQ(inverted_budgets(spiked), (std::vector<double>{0.3, 0.5, 0.7, 1.0}));
  EXPECT_THROW(LatencyModel({{1.0, 428}, {0.7, 313}, {0.5, 5679}, {0.3, 3826}}), std::invalid_argument);
  const auto fit = fit_latency(spiked, 430.0);
  EXPECT_TRUE(fit.work_proportional);
  EXPECT_EQ(fit.kind(), "work-proportional");
  EXPECT_NE(fit.why.find("budget 0.5 measured slower than budget 0.7"), std::string::npos) << fit.why;
  EXPECT_DOUBLE_EQ(fit.model.step_ms(1.0), 430.0);  // the measured dense step
  EXPECT_DOUBLE_EQ(fit.model.step_ms(0.3), 129.0);  // times the share of tokens computed
  EXPECT_DOUBLE_EQ(fit.model.step_ms(0.0), 0.0);

  // Out of order, but within the noise: a measured line, not a fallback.
  const std::map<double, LatencyPoint> close{{1.0, {100, 0.05}}, {0.5, {60, 0.05}}, {0.4, {61, 0.05}}};
  EXPECT_TRUE(inverted_budgets(close).empty());
  const auto measured = fit_latency(close, 100);
  EXPECT_FALSE(measured.work_proportional);
  EXPECT_EQ(measured.kind(), "measured");
  EXPECT_TRUE(measured.why.empty());
  EXPECT_GT(measured.model.slope_ms(), 0);

  // In order pairwise within the noise, yet a line that falls: also a fallback.
  const std::map<double, LatencyPoint> flat{{1.0, {100, 0.2}}, {0.6, {110, 0.2}}, {0.2, {115, 0.2}}};
  EXPECT_TRUE(inverted_budgets(flat).empty());
  const auto falls = fit_latency(flat, 100);
  EXPECT_TRUE(falls.work_proportional);
  EXPECT_NE(falls.why.find("do not grow"), std::string::npos) << falls.why;

  EXPECT_THROW(fit_latency({}, 100), std::invalid_argument);
  EXPECT_THROW(LatencyModel::work_proportional(0), std::invalid_argument);
}

TEST(LatencyModelTest, FitsALineThroughTheMeasuredBudgets) {
  // Exact on affine data: 5 ms + 95 ms x budget.
  const auto exact = linear_model();
  EXPECT_NEAR(exact.intercept_ms(), 5, 1e-9);
  EXPECT_NEAR(exact.slope_ms(), 95, 1e-9);
  EXPECT_NEAR(exact.step_ms(0.4), 43, 1e-9);
  EXPECT_DOUBLE_EQ(exact.step_ms(0.0), 0);  // skipped
  EXPECT_NEAR(exact.cost_ms({1, 0.5, 0}), 100 + 52.5, 1e-9);
  // One noisy point (the 0.5 step measured slow) does not bend the model: still increasing.
  const LatencyModel noisy({{1.0, 100}, {0.8, 81}, {0.6, 62}, {0.5, 80}, {0.4, 43}, {0.3, 33}, {0.2, 24}});
  for (double b = 0.1; b < 1.0; b += 0.1) EXPECT_LT(noisy.step_ms(b), noisy.step_ms(b + 0.1)) << b;
  // Least squares by hand for {(0.5, 50), (1, 110)}: the line through both.
  const LatencyModel two({{0.5, 50}, {1.0, 110}});
  EXPECT_NEAR(two.slope_ms(), 120, 1e-9);
  EXPECT_NEAR(two.intercept_ms(), -10, 1e-9);
  EXPECT_DOUBLE_EQ(two.step_ms(0.05), 0) << "never negative";
  EXPECT_DOUBLE_EQ(LatencyModel({{0.5, 40}}).step_ms(1.0), 80);  // one point: proportional
  EXPECT_THROW(LatencyModel(std::map<double, double>{}), std::invalid_argument);
  EXPECT_THROW(LatencyModel({{1.5, 10}}), std::invalid_argument);
  EXPECT_THROW(LatencyModel({{0.5, 100}, {1.0, 50}}), std::invalid_argument);  // shrinking with the budget
}

TEST(Repair, BringsACandidateUnderTheTargetEvenly) {
  SearchSpace s{10, 2, 0.1, 0.0};
  const auto m = linear_model();
  const Target t{Target::Kind::kSpeedup, 2.0};
  std::mt19937_64 rng(1);
  Genome g(10, 1.0);
  ASSERT_TRUE(repair(g, s, m, t, rng));
  EXPECT_TRUE(t.within(g, m));
  EXPECT_LE(m.cost_ms(g), 500 + 1e-9);
  EXPECT_EQ(g[0], 1.0);
  EXPECT_EQ(g[1], 1.0);
  const auto [lo, hi] = std::minmax_element(g.begin() + 2, g.end());
  EXPECT_LE(*hi - *lo, 0.1 + 1e-9) << "highest budgets go first, so the free steps stay within one grid step";
  // Raising the lowest free step by a grid step would break the target: repair took no more than needed.
  Genome up = g;
  *std::min_element(up.begin() + 2, up.end()) += 0.1;
  EXPECT_FALSE(t.within(up, m));
  // Compute share: the mean budget.
  Genome c(10, 1.0);
  ASSERT_TRUE(repair(c, s, m, {Target::Kind::kComputeShare, 0.4}, rng));
  EXPECT_LE(std::accumulate(c.begin(), c.end(), 0.0) / 10, 0.4 + 1e-9);
  // Unreachable: 10 dense steps at most 100 ms each cannot make 20x.
  Genome d(10, 1.0);
  EXPECT_FALSE(repair(d, {10, 10, 0.1, 0.0}, m, {Target::Kind::kSpeedup, 20.0}, rng));
}

// Early steps matter more: the fitness rewards budget by step weight with diminishing returns.
std::vector<double> synthetic_fitness(const std::vector<Genome>& genomes, int64_t* calls, std::set<Genome>* seen) {
  std::vector<double> out;
  for (const auto& g : genomes) {
    EXPECT_TRUE(seen->insert(g).second) << "a genome was evaluated twice";
    double f = 0;
    for (size_t i = 0; i < g.size(); ++i) f += static_cast<double>(g.size() - i) * std::log(g[i] + 0.05);
    out.push_back(f);
    ++*calls;
  }
  return out;
}

TEST(Evolve, ImprovesStaysWithinTheTargetAndIsReproducible) {
  const SearchSpace s{12, 2, 0.1, 0.0};
  const auto m = linear_model();
  const Target t{Target::Kind::kSpeedup, 2.5};
  auto run = [&](uint64_t seed, int64_t* calls) {
    std::set<Genome> seen;
    SearchOptions o;
    o.population = 12;
    o.generations = 15;
    o.seed = seed;
    std::vector<double> best_by_generation;
    o.on_generation = [&](int, int64_t, const Evaluated& best, size_t) { best_by_generation.push_back(best.fitness); };
    auto r = evolve(s, m, t, [&](const std::vector<Genome>& g) { return synthetic_fitness(g, calls, &seen); }, o);
    EXPECT_EQ(best_by_generation.size(), 16u);
    EXPECT_TRUE(std::is_sorted(best_by_generation.begin(), best_by_generation.end())) << "elitism never loses the best";
    EXPECT_GT(best_by_generation.back(), best_by_generation.front());
    return r;
  };
  int64_t calls = 0;
  const auto a = run(7, &calls);
  EXPECT_EQ(calls, static_cast<int64_t>(a.evaluated.size()));
  for (const auto& e : a.evaluated) EXPECT_TRUE(t.within(e.genome, m));
  // The search learned the structure: more budget early than late.
  const auto& g = a.best.genome;
  EXPECT_GT(g[2] + g[3] + g[4], g[9] + g[10] + g[11]) << "best genome front-loads its budget";
  int64_t again = 0;
  EXPECT_EQ(run(7, &again).best.genome, g) << "same seed, same search";
}

TEST(Nsga2, ReturnsANonDominatedFrontWithinTheTarget) {
  const SearchSpace s{12, 2, 0.1, 0.0};
  const auto m = linear_model();
  const Target t{Target::Kind::kSpeedup, 1.5};
  int64_t calls = 0;
  std::set<Genome> seen;
  SearchOptions o;
  o.population = 12;
  o.generations = 10;
  o.seed = 3;
  const auto r = nsga2(s, m, t, [&](const std::vector<Genome>& g) { return synthetic_fitness(g, &calls, &seen); }, o);
  ASSERT_GE(r.front.size(), 3u);
  for (size_t i = 0; i < r.front.size(); ++i) {
    EXPECT_TRUE(t.within(r.front[i].genome, m));
    if (i > 0) {
      EXPECT_GT(r.front[i].cost_ms, r.front[i - 1].cost_ms);
      EXPECT_GT(r.front[i].fitness, r.front[i - 1].fitness) << "costlier front members must be better";
    }
    for (const auto& e : r.evaluated) {
      EXPECT_FALSE(e.cost_ms <= r.front[i].cost_ms && e.fitness >= r.front[i].fitness &&
                   (e.cost_ms < r.front[i].cost_ms || e.fitness > r.front[i].fitness));
    }
  }
}

TEST(Evolve, AnUnreachableTargetIsRefused) {
  EXPECT_THROW(evolve({10, 10, 0.1, 0.0}, linear_model(), {Target::Kind::kSpeedup, 3.0},
                      [](const std::vector<Genome>& g) { return std::vector<double>(g.size(), 0.0); }, {}),
               std::invalid_argument);
}

TEST(ParetoFront, KeepsOnlyTheNonDominated) {
  const std::vector<Evaluated> pts = {{{}, 1, 0.5}, {{}, 2, 0.9}, {{}, 3, 0.8}, {{}, 0.5, 0.1}, {{}, 2.5, 0.9}};
  const auto f = pareto_front(pts);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].cost_ms, 0.5);
  EXPECT_EQ(f[1].cost_ms, 1);
  EXPECT_EQ(f[2].cost_ms, 2);
}

TEST(RanksAbove, FitnessFirstThenTheCheaperAndNeverAnEqual) {
  EXPECT_TRUE(ranks_above(0.9, 200, 0.8, 100));   // fitter, though dearer
  EXPECT_FALSE(ranks_above(0.8, 100, 0.9, 200));
  EXPECT_TRUE(ranks_above(0.9, 100, 0.9, 200));   // as fit, and cheaper
  EXPECT_FALSE(ranks_above(0.9, 200, 0.9, 100));
  EXPECT_FALSE(ranks_above(0.9, 100, 0.9, 100));  // an equal never displaces the earlier one
}

}  // namespace
}  // namespace astraea::tuner
