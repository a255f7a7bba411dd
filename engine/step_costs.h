// What a run's steps cost on another machine: the measured time of each kind of model call (the
// action words of BranchState::actions()) on a preset and size, priced over a run's step actions.
// How a step-caching method's decisions, made on the tiny model, become a time on Wan2.1-1.3B at
// 32760 tokens (docs/peers.md): bench/peer_actions_bench measures the table on the GPU.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace astraea::engine {

struct StepCosts {
  std::string model, device;  ///< where it was measured
  int64_t tokens = 0;
  int64_t layers = 0;
  double dense_ms = 0;        ///< one model call, every block
  double reuse_ms = 0;        ///< no model call: the output from a kept one (EasyCache)
  double stand_in_ms = 0;     ///< "reuse@0": embedding and head, no block
  double first_block_ms = 0;  ///< "reuse@1": the first block, then a kept residual
  double pab_self_ms = 0, pab_cross_ms = 0, pab_both_ms = 0;  ///< every block reusing that attention
  std::map<double, double> tokens_ms;                         ///< the token-wise call at each measured budget
  std::map<double, double> toca_ms;  ///< ToCa's partial call at each measured ratio (optional)

  /// The table in FILE (as peer_actions_bench writes it); std::invalid_argument naming the file
  /// and field that is missing or not a positive time.
  static StepCosts read(const std::string& file);
  static StepCosts from_json(const nlohmann::json& j, const std::string& file);
  nlohmann::json to_json() const;

  /// One call's cost: "dense", "reuse", "reuse@K" (K blocks between the stand-in and dense,
  /// linear in K through the two measured points), "pab:S,C" (linear in S and C between the
  /// measured all-block broadcasts), "tokens:B" (linear between the two measured budgets around B),
  /// "toca:R" (linear through the measured ratios, extended past them).
  /// std::invalid_argument for a word it cannot price.
  double call_ms(const std::string& action) const;
  /// The cost of one call at each measured token budget, dense at 1: the points of a tuner's
  /// latency line (tune --step-costs), so the search and the pricing share one cost model.
  std::map<double, double> budget_ms() const {
    auto points = tokens_ms;
    points[1.0] = dense_ms;
    return points;
  }
  /// A run's cost: each step's calls ("skip" costs nothing, "a+b" both).
  double run_ms(const std::vector<std::string>& step_actions) const;
  /// The same run computed densely: STEPS steps of CALLS_PER_STEP dense calls.
  double dense_run_ms(int64_t steps, int64_t calls_per_step) const {
    return dense_ms * static_cast<double>(steps * calls_per_step);
  }
};

}  // namespace astraea::engine
