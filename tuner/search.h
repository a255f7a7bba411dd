// The tuner's search over per-step token budgets: the genome, its predicted cost from a measured
// latency model, the repair that brings a candidate under the target, and two searches, the
// ASTRAEA paper's classic evolutionary algorithm and NSGA-II over (cost, quality).
//
// Everything here is plain C++ and seeded: the same seed and the same fitness give the same
// search. Evaluating a genome (running the engine, scoring the video) is the caller's: a search
// asks for fitnesses in batches and never asks twice for the same genome.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tuner/latency_model.h"

namespace astraea::tuner {

struct SearchSpace {
  int64_t steps = 30;
  int64_t dense_steps = 2;  ///< the first K steps are forced to budget 1
  double grid = 0.1;        ///< budgets are multiples of this
  double min_budget = 0.0;  ///< the lowest budget a free step may take (0 allows skipped steps)
  /// The mixed genome: a free step may also be a step-cache decision (engine's kReuseBudget),
  /// which sits between a skipped step and the lowest token budget in cost.
  bool step_cache = false;
  /// The budgets a free step may take, by cost: skip (0), reuse (with step_cache), then ascending.
  std::vector<double> levels() const;
  /// Throws std::invalid_argument naming the field when the space is empty or inconsistent.
  void validate() const;
};

/// The performance target: a latency limit in ms, derived from what the user asked for.
struct Target {
  enum class Kind { kSpeedup, kLatencyMs, kComputeShare } kind = Kind::kSpeedup;
  double value = 2.0;
  /// The latency limit this target sets for MODEL over STEPS steps (compute share: the mean
  /// budget is limited instead; see within()).
  double limit_ms(const LatencyModel& model, int64_t steps) const;
  bool within(const Genome& genome, const LatencyModel& model) const;
};

/// Lowers budgets until GENOME meets TARGET, as the paper does rather than discarding it: each
/// round takes one grid step off a free step chosen at random among those with the highest
/// budget. Returns false if even the lowest budgets miss the target.
bool repair(Genome& genome, const SearchSpace& space, const LatencyModel& model, const Target& target,
            std::mt19937_64& rng);

/// A random genome of SPACE (free steps uniform over the levels), repaired to TARGET.
Genome random_genome(const SearchSpace& space, const LatencyModel& model, const Target& target, std::mt19937_64& rng);

/// Fitnesses of a batch of genomes, higher is better (one per genome, same order).
using Evaluate = std::function<std::vector<double>(const std::vector<Genome>&)>;

struct Evaluated {
  Genome genome;
  double cost_ms = 0, fitness = 0;
};

/// The one rule for the best of several candidates, in the search, `export` and `query best`:
/// higher fitness, then lower predicted cost; among equals, the one evaluated first.
inline bool ranks_above(double fitness, double cost_ms, double other_fitness, double other_cost_ms) {
  return fitness > other_fitness || (fitness == other_fitness && cost_ms < other_cost_ms);
}

struct SearchOptions {
  int population = 16, generations = 10;
  double mutation = 0.3;        ///< per-gene mutation probability at generation 0; decays linearly to a tenth
  double two_point_share = 0.5; ///< share of crossovers that are two-point (the rest uniform)
  uint64_t seed = 0;
  /// Called after each generation: generation, evaluations so far, best so far, Pareto size.
  std::function<void(int, int64_t, const Evaluated&, size_t)> on_generation;
};

struct SearchResult {
  std::vector<Evaluated> evaluated;  ///< every distinct genome, in evaluation order
  std::vector<Evaluated> front;      ///< non-dominated over (cost lower, fitness higher), by cost
  Evaluated best;                    ///< highest fitness within the target
};

/// The paper's evolutionary algorithm: rank-weighted parents, uniform and two-point crossover,
/// decaying mutation, repair, elitist survival.
SearchResult evolve(const SearchSpace& space, const LatencyModel& model, const Target& target, const Evaluate& evaluate,
                    const SearchOptions& options);

/// NSGA-II over (cost, fitness): non-dominated sorting and crowding distance pick the survivors.
SearchResult nsga2(const SearchSpace& space, const LatencyModel& model, const Target& target, const Evaluate& evaluate,
                   const SearchOptions& options);

/// The non-dominated members of POINTS over (cost lower, fitness higher), by ascending cost.
std::vector<Evaluated> pareto_front(const std::vector<Evaluated>& points);

}  // namespace astraea::tuner
