// Step latency as a function of the token budget, built from `astraea-bench profile` rows, and the
// rule that keeps a load spike on a busy machine from inverting it: a profile whose times do not
// grow with the budget beyond their noise gives way to the work-proportional model.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace astraea::tuner {

/// One budget per sampling step, each a multiple of the grid in [0, 1].
using Genome = std::vector<double>;

/// Step latency as a function of the budget: the least-squares line a + b x budget through the
/// measured points (budget -> ms), since a step's work is affine in its budget (the keys and
/// values of all tokens, plus the selected share of everything else) and a line does not chase
/// the noise of single points; budget 0 costs nothing (the step is skipped). Built from
/// `astraea-bench profile` runs. One point: proportional to the budget.
class LatencyModel {
 public:
  /// Throws std::invalid_argument for no points, a budget outside (0, 1], a time that is not
  /// positive, or a line that does not grow with the budget (fit_latency() falls back instead).
  explicit LatencyModel(std::map<double, double> step_ms_by_budget);
  /// A model in which every step costs nothing: only a placeholder to assign to.
  LatencyModel() = default;
  /// The work-proportional model: a step costs DENSE_STEP_MS times its budget, the share of
  /// tokens it computes. What the tuner uses when the measured points cannot be trusted.
  static LatencyModel work_proportional(double dense_step_ms);

  /// A step's latency at BUDGET: 0 for a skipped step, reuse_ms() for engine's kReuseBudget.
  double step_ms(double budget) const;
  /// What a reusing step costs (the mixed genome: embedding and head, no block), 0 unless set.
  double reuse_ms() const { return reuse_ms_; }
  void set_reuse_ms(double ms) { reuse_ms_ = ms; }
  double intercept_ms() const { return a_; }
  double slope_ms() const { return b_; }
  /// Predicted latency of a whole schedule.
  double cost_ms(const Genome& genome) const;
  double dense_ms(int64_t steps) const { return step_ms(1.0) * static_cast<double>(steps); }

 private:
  double a_ = 0, b_ = 0;
  double reuse_ms_ = 0;
};

/// One profiled budget: the median step time and its relative noise (standard deviation over
/// mean; 0 when unknown).
struct LatencyPoint {
  double step_ms = 0;
  double noise = 0;
};

/// The budgets that take part in an inversion: a pair where the lower budget's median exceeds the
/// higher budget's by more than both their standard deviations together (noise x time), which a
/// step's work, growing with its budget, cannot explain. Ascending; empty when the times grow.
std::vector<double> inverted_budgets(const std::map<double, LatencyPoint>& points);

/// The latency model the tuner runs on, and how it came about.
struct LatencyFit {
  LatencyModel model;
  bool work_proportional = false;  ///< the measured points could not be used
  std::string why;                 ///< one line saying why, when work_proportional

  /// "measured" or "work-proportional": what a study records.
  std::string kind() const { return work_proportional ? "work-proportional" : "measured"; }
};

/// The measured line through POINTS when they grow with the budget; otherwise (an inversion beyond
/// their noise, or a line whose slope is not positive) the work-proportional model on
/// DENSE_STEP_MS, the measured dense step, with the reason. Throws std::invalid_argument for no
/// points or bad values, as LatencyModel does.
LatencyFit fit_latency(const std::map<double, LatencyPoint>& points, double dense_step_ms);

}  // namespace astraea::tuner
