// Per-step token budgets (and the selection parameters, model/token_cache.h): the ASTRAEA method's
// schedule, what the tuner exports, and its file format.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/token_cache.h"

namespace astraea {

/// A step's budget that stands for a step-cache decision instead of a share of tokens: the model
/// embeds its input and runs its head, and the residual its block stack added at the last computed
/// step stands in for the blocks (what TeaCache and MagCache reuse). Files write it "reuse".
inline constexpr double kReuseBudget = -1.0;

/// One budget in [0, 1] per sampling step: 1 computes every token, 0 skips the step (the last
/// model output is reused), anything between computes that share of tokens in every block; or
/// kReuseBudget (the tuner's mixed genome).
struct TokenBudgetSchedule {
  std::string model;            ///< preset it was made for
  std::vector<double> budgets;  ///< one per step
  SelectionParams selection;
  std::map<std::string, std::string> provenance;  ///< free-form: study, trial, card, ...

  int64_t steps() const { return static_cast<int64_t>(budgets.size()); }
  /// Share of a dense run's token computations (the mean budget; a reusing step computes none).
  double compute_share() const;
};

/// `budget` at every step after `dense_steps` dense ones (--budget B, --dense-steps K).
TokenBudgetSchedule uniform_schedule(const std::string& model, int64_t steps, double budget,
                                     int64_t dense_steps);

/// Reads a schedule file (format "astraea-schedule", version 1). Throws std::runtime_error
/// naming the file and field: malformed JSON, wrong format or version, a budget outside [0, 1]
/// or NaN, unknown fields. When `model` / `steps` are given (non-empty / > 0), they must match.
TokenBudgetSchedule read_schedule(const std::string& path, const std::string& model = "", int64_t steps = 0);

/// Writes `schedule` as JSON, to a temporary name then renamed.
/// Returns the text it wrote.
std::string write_schedule(const std::string& path, const TokenBudgetSchedule& schedule);
/// The file format's text of SCHEDULE (keys sorted, two-space indent), unvalidated.
std::string schedule_json(const TokenBudgetSchedule& schedule);

/// Checks a schedule in memory (same rules as read_schedule); `where` prefixes the message.
void validate_schedule(const TokenBudgetSchedule& schedule, const std::string& where,
                       const std::string& model = "", int64_t steps = 0);

}  // namespace astraea
