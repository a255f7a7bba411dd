#include "tuner/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>

#include "engine/schedule.h"
#include "io/field_error.h"

namespace astraea::tuner {
namespace {

double snap(double x) { return std::round(x * 1e9) / 1e9; }

// The index of BUDGET among LEVELS (the nearest one).
size_t level_index(const std::vector<double>& levels, double budget) {
  size_t best = 0;
  for (size_t i = 1; i < levels.size(); ++i) {
    if (std::abs(levels[i] - budget) < std::abs(levels[best] - budget)) best = i;
  }
  return best;
}

void force_dense(Genome& g, const SearchSpace& space) {
  for (int64_t i = 0; i < space.dense_steps; ++i) g[static_cast<size_t>(i)] = 1.0;
}

// Shared machinery of both searches: the evaluation cache and the variation operators.
class Engine {
 public:
  Engine(const SearchSpace& space, const LatencyModel& model, const Target& target, const Evaluate& evaluate,
         const SearchOptions& options)
      : space_(space), model_(model), target_(target), evaluate_(evaluate), options_(options), rng_(options.seed),
        levels_(space.levels()) {
    space.validate();
    if (options.population < 2) throw FieldError("population", "must be at least 2");
    if (options.generations < 0) throw FieldError("generations", "must not be negative");
    Genome lowest(static_cast<size_t>(space.steps), levels_.front());
    force_dense(lowest, space);
    if (!target.within(lowest, model)) {
      throw std::invalid_argument("the target cannot be met: even the lowest budgets (" + std::to_string(levels_.front()) +
                                  " after " + std::to_string(space.dense_steps) + " dense steps) are predicted at " +
                                  std::to_string(model.cost_ms(lowest)) + " ms");
    }
  }

  // Evaluates the genomes not seen before, in one batch; returns all of them evaluated.
  std::vector<Evaluated> evaluate(const std::vector<Genome>& genomes) {
    std::vector<Genome> fresh;
    std::set<Genome> queued;
    for (const auto& g : genomes) {
      if (!cache_.count(g) && queued.insert(g).second) fresh.push_back(g);
    }
    if (!fresh.empty()) {
      const auto fitness = evaluate_(fresh);
      if (fitness.size() != fresh.size()) throw std::logic_error("the evaluator returned the wrong number of fitnesses");
      for (size_t i = 0; i < fresh.size(); ++i) {
        Evaluated e{fresh[i], model_.cost_ms(fresh[i]), fitness[i]};
        cache_.emplace(fresh[i], e);
        order_.push_back(e);
      }
    }
    std::vector<Evaluated> out;
    for (const auto& g : genomes) out.push_back(cache_.at(g));
    return out;
  }

  std::vector<Genome> initial() {
    std::vector<Genome> pop;
    for (int attempt = 0; static_cast<int>(pop.size()) < options_.population && attempt < options_.population * 20; ++attempt) {
      auto g = random_genome(space_, model_, target_, rng_);
      if (std::find(pop.begin(), pop.end(), g) == pop.end()) pop.push_back(std::move(g));
    }
    while (static_cast<int>(pop.size()) < options_.population) pop.push_back(pop.back());  // a tiny space
    return pop;
  }

  Genome child(const Genome& a, const Genome& b, int generation) {
    Genome c = a;
    const size_t n = c.size(), free = static_cast<size_t>(space_.dense_steps);
    if (std::uniform_real_distribution<>(0, 1)(rng_) < options_.two_point_share && n > free + 1) {
      std::uniform_int_distribution<size_t> pick(free, n - 1);
      size_t lo = pick(rng_), hi = pick(rng_);
      if (lo > hi) std::swap(lo, hi);
      for (size_t i = lo; i <= hi; ++i) c[i] = b[i];
    } else {
      for (size_t i = free; i < n; ++i) {
        if (rng_() & 1) c[i] = b[i];
      }
    }
    // Mutation decays linearly from `mutation` to a tenth of it over the generations.
    const double progress = options_.generations > 1 ? static_cast<double>(generation) / (options_.generations - 1) : 0.0;
    const double p = options_.mutation * (1.0 - 0.9 * progress);
    for (size_t i = free; i < n; ++i) {
      if (std::uniform_real_distribution<>(0, 1)(rng_) >= p) continue;
      const size_t at = level_index(levels_, c[i]);
      const bool up = (rng_() & 1) != 0;
      c[i] = levels_[up ? std::min(at + 1, levels_.size() - 1) : (at == 0 ? 0 : at - 1)];
    }
    force_dense(c, space_);
    repair(c, space_, model_, target_, rng_);
    return c;
  }

  // Children of PARENTS (already evaluated), picking each parent with PICK; new genomes first.
  std::vector<Genome> offspring(const std::function<const Genome&()>& pick, int generation) {
    std::vector<Genome> kids;
    while (static_cast<int>(kids.size()) < options_.population) {
      Genome c;
      for (int attempt = 0; attempt < 10; ++attempt) {
        c = child(pick(), pick(), generation);
        if (!cache_.count(c) && std::find(kids.begin(), kids.end(), c) == kids.end()) break;
      }
      kids.push_back(std::move(c));
    }
    return kids;
  }

  SearchResult result() const {
    SearchResult r;
    r.evaluated = order_;
    r.front = pareto_front(order_);
    if (!order_.empty()) r.best = order_.front();
    for (const Evaluated& e : order_) {
      if (ranks_above(e.fitness, e.cost_ms, r.best.fitness, r.best.cost_ms)) r.best = e;
    }
    return r;
  }

  void report(int generation) const {
    if (!options_.on_generation) return;
    const auto r = result();
    options_.on_generation(generation, static_cast<int64_t>(order_.size()), r.best, r.front.size());
  }

  std::mt19937_64& rng() { return rng_; }

 private:
  const SearchSpace& space_;
  const LatencyModel& model_;
  const Target& target_;
  const Evaluate& evaluate_;
  const SearchOptions& options_;
  std::mt19937_64 rng_;
  std::vector<double> levels_;
  std::map<Genome, Evaluated> cache_;
  std::vector<Evaluated> order_;
};

// PARENTS then the CHILDREN not among them: each genome once.
std::vector<Evaluated> merged(const std::vector<Evaluated>& parents, const std::vector<Evaluated>& children) {
  std::vector<Evaluated> pool = parents;
  for (const auto& c : children) {
    if (std::none_of(pool.begin(), pool.end(), [&](const Evaluated& p) { return p.genome == c.genome; })) pool.push_back(c);
  }
  return pool;
}

bool dominates(const Evaluated& a, const Evaluated& b) {
  return a.cost_ms <= b.cost_ms && a.fitness >= b.fitness && (a.cost_ms < b.cost_ms || a.fitness > b.fitness);
}

// Fast non-dominated sorting: the fronts, best first, as indices into POINTS.
std::vector<std::vector<size_t>> fronts(const std::vector<Evaluated>& points) {
  const size_t n = points.size();
  std::vector<std::vector<size_t>> dominated(n), out(1);
  std::vector<int> count(n, 0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (dominates(points[i], points[j])) dominated[i].push_back(j);
      else if (dominates(points[j], points[i])) ++count[i];
    }
    if (count[i] == 0) out[0].push_back(i);
  }
  while (!out.back().empty()) {
    std::vector<size_t> next;
    for (size_t i : out.back())
      for (size_t j : dominated[i])
        if (--count[j] == 0) next.push_back(j);
    out.push_back(std::move(next));
  }
  out.pop_back();
  return out;
}

// Crowding distance of each member of FRONT over both objectives (boundaries infinite).
std::vector<double> crowding(const std::vector<Evaluated>& points, const std::vector<size_t>& front) {
  std::vector<double> d(front.size(), 0.0);
  for (int objective = 0; objective < 2; ++objective) {
    auto value = [&](size_t k) { return objective == 0 ? points[front[k]].cost_ms : points[front[k]].fitness; };
    std::vector<size_t> order(front.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return value(a) < value(b); });
    const double span = value(order.back()) - value(order.front());
    d[order.front()] = d[order.back()] = std::numeric_limits<double>::infinity();
    for (size_t k = 1; k + 1 < order.size(); ++k) {
      if (span > 0) d[order[k]] += (value(order[k + 1]) - value(order[k - 1])) / span;
    }
  }
  return d;
}

}  // namespace

std::vector<double> SearchSpace::levels() const {
  std::vector<double> out;
  const int64_t n = static_cast<int64_t>(std::llround(1.0 / grid));
  for (int64_t k = 0; k <= n; ++k) {
    const double b = snap(static_cast<double>(k) / static_cast<double>(n));
    if (b >= min_budget - 1e-12) out.push_back(b);
  }
  // A reusing step costs more than a skip and less than any token budget: the levels are in cost
  // order, which repair and mutation step along.
  if (step_cache) out.insert(out.front() == 0.0 ? out.begin() + 1 : out.begin(), kReuseBudget);
  return out;
}

void SearchSpace::validate() const {
  if (steps < 1) throw FieldError("steps", "must be at least 1");
  if (dense_steps < 0 || dense_steps > steps)
    throw FieldError({"dense_steps", "steps"}, "{0} must be in [0, {1}]");
  if (!(grid > 0 && grid <= 1) || std::abs(1.0 / grid - std::round(1.0 / grid)) > 1e-6) {
    throw FieldError("grid", "must divide 1 (0.1, 0.05, 0.25, ...), got " + std::to_string(grid));
  }
  if (!(min_budget >= 0 && min_budget <= 1)) throw FieldError("min_budget", "must be in [0, 1]");
}

double Target::limit_ms(const LatencyModel& model, int64_t steps) const {
  switch (kind) {
    case Kind::kSpeedup: return model.dense_ms(steps) / value;
    case Kind::kLatencyMs: return value;
    case Kind::kComputeShare: return std::numeric_limits<double>::infinity();
  }
  return value;
}

bool Target::within(const Genome& genome, const LatencyModel& model) const {
  if (kind == Kind::kComputeShare) {
    const double share = std::accumulate(genome.begin(), genome.end(), 0.0,
                                         [](double sum, double b) { return sum + std::max(b, 0.0); });
    return share / static_cast<double>(genome.size()) <= value + 1e-9;
  }
  return model.cost_ms(genome) <= limit_ms(model, static_cast<int64_t>(genome.size())) + 1e-9;
}

bool repair(Genome& genome, const SearchSpace& space, const LatencyModel& model, const Target& target,
            std::mt19937_64& rng) {
  const auto levels = space.levels();
  force_dense(genome, space);
  while (!target.within(genome, model)) {
    double top = -1;
    std::vector<size_t> candidates;
    for (size_t i = static_cast<size_t>(space.dense_steps); i < genome.size(); ++i) {
      if (genome[i] <= levels.front() + 1e-12) continue;
      if (genome[i] > top + 1e-12) {
        top = genome[i];
        candidates.clear();
      }
      if (std::abs(genome[i] - top) <= 1e-12) candidates.push_back(i);
    }
    if (candidates.empty()) return false;
    const size_t i = candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng)];
    genome[i] = levels[level_index(levels, genome[i]) - 1];
  }
  return true;
}

Genome random_genome(const SearchSpace& space, const LatencyModel& model, const Target& target, std::mt19937_64& rng) {
  const auto levels = space.levels();
  Genome g(static_cast<size_t>(space.steps));
  std::uniform_int_distribution<size_t> pick(0, levels.size() - 1);
  for (auto& b : g) b = levels[pick(rng)];
  repair(g, space, model, target, rng);
  return g;
}

std::vector<Evaluated> pareto_front(const std::vector<Evaluated>& points) {
  std::vector<Evaluated> front;
  for (const auto& p : points) {
    bool dominated = false;
    for (const auto& q : points) dominated = dominated || dominates(q, p);
    const bool repeat = std::any_of(front.begin(), front.end(), [&](const Evaluated& f) {
      return f.cost_ms == p.cost_ms && f.fitness == p.fitness;
    });
    if (!dominated && !repeat) front.push_back(p);
  }
  std::sort(front.begin(), front.end(), [](const Evaluated& a, const Evaluated& b) { return a.cost_ms < b.cost_ms; });
  return front;
}

SearchResult evolve(const SearchSpace& space, const LatencyModel& model, const Target& target, const Evaluate& evaluate,
                    const SearchOptions& options) {
  Engine engine(space, model, target, evaluate, options);
  auto population = engine.evaluate(engine.initial());
  engine.report(0);
  for (int g = 0; g < options.generations; ++g) {
    std::sort(population.begin(), population.end(), [](const Evaluated& a, const Evaluated& b) { return a.fitness > b.fitness; });
    // Rank-weighted parents: the best of P gets weight P, the worst 1.
    std::vector<double> weights(population.size());
    for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<double>(population.size() - i);
    std::discrete_distribution<size_t> parent(weights.begin(), weights.end());
    auto pick = [&]() -> const Genome& { return population[parent(engine.rng())].genome; };
    const auto children = engine.evaluate(engine.offspring(pick, g));
    // Elitist survival: the best P of parents and children, each genome once.
    std::vector<Evaluated> pool = merged(population, children);
    std::stable_sort(pool.begin(), pool.end(), [](const Evaluated& a, const Evaluated& b) { return a.fitness > b.fitness; });
    pool.resize(std::min(pool.size(), static_cast<size_t>(options.population)));
    population = std::move(pool);
    engine.report(g + 1);
  }
  return engine.result();
}

SearchResult nsga2(const SearchSpace& space, const LatencyModel& model, const Target& target, const Evaluate& evaluate,
                   const SearchOptions& options) {
  Engine engine(space, model, target, evaluate, options);
  auto population = engine.evaluate(engine.initial());
  engine.report(0);
  for (int g = 0; g < options.generations; ++g) {
    // Binary tournament on (front rank, crowding distance).
    const auto fs = fronts(population);
    std::vector<size_t> rank(population.size());
    std::vector<double> crowd(population.size());
    for (size_t r = 0; r < fs.size(); ++r) {
      const auto d = crowding(population, fs[r]);
      for (size_t k = 0; k < fs[r].size(); ++k) {
        rank[fs[r][k]] = r;
        crowd[fs[r][k]] = d[k];
      }
    }
    std::uniform_int_distribution<size_t> any(0, population.size() - 1);
    auto pick = [&]() -> const Genome& {
      const size_t a = any(engine.rng()), b = any(engine.rng());
      const bool a_wins = rank[a] < rank[b] || (rank[a] == rank[b] && crowd[a] >= crowd[b]);
      return population[a_wins ? a : b].genome;
    };
    const auto children = engine.evaluate(engine.offspring(pick, g));
    std::vector<Evaluated> pool = merged(population, children);
    // Survivors: whole fronts while they fit, then the least crowded of the next.
    std::vector<Evaluated> next;
    for (const auto& front : fronts(pool)) {
      if (next.size() + front.size() <= static_cast<size_t>(options.population)) {
        for (size_t i : front) next.push_back(pool[i]);
        continue;
      }
      const auto d = crowding(pool, front);
      std::vector<size_t> order(front.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return d[a] > d[b]; });
      for (size_t k = 0; next.size() < static_cast<size_t>(options.population); ++k) next.push_back(pool[front[order[k]]]);
      break;
    }
    population = std::move(next);
    engine.report(g + 1);
  }
  return engine.result();
}

}  // namespace astraea::tuner
