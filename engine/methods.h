// The registry of acceleration methods: every method is one file in engine/ and one line in
// engine/methods.cpp's table; callers reach it by name, as `--method NAME[:KEY=VALUE,...]`.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/accelerator.h"
#include "engine/schedule.h"

namespace astraea::engine {

/// A method's parameters as given: value text by key.
using MethodParams = std::map<std::string, std::string>;

/// One parameter a method takes.
struct Knob {
  std::string name;
  std::string default_value;  ///< "" for none (the parameter is optional or required as `doc` says)
  std::string doc;
};

/// A registered method: its name, what it does, its parameters, and how to make one. `make`
/// throws std::invalid_argument naming a bad parameter; unknown keys are refused before it runs.
struct MethodInfo {
  std::string name;
  std::string summary;
  std::vector<Knob> knobs;
  std::function<std::shared_ptr<const Accelerator>(const MethodParams&)> make;
};

/// The Accelerator around a method whose rule and state live in its branch type BRANCH, made from
/// PARAMS (`Branch(const Params&)`) and called through `Branch::run(model, latents, call,
/// context)`; for the methods that never skip a whole step (the peers).
template <class Branch, class Params>
class BranchMethod : public Accelerator {
 public:
  BranchMethod(std::string name, Params p, nlohmann::json params)
      : name_(std::move(name)), p_(std::move(p)), params_(std::move(params)) {}
  std::string name() const override { return name_; }
  nlohmann::json params() const override { return params_; }
  std::string can_run(const std::string&, int64_t) const override { return {}; }
  std::unique_ptr<BranchState> new_branch() const override { return std::make_unique<Branch>(p_); }
  bool skips(const CallInfo&) const override { return false; }
  at::Tensor call(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                  const at::Tensor& context, BranchState& branch) const override {
    return static_cast<Branch&>(branch).run(model, latents, call, context);
  }

 private:
  std::string name_;
  Params p_;
  nlohmann::json params_;
};

/// Every registered method, in the table's order.
const std::vector<MethodInfo>& methods();
/// The method NAME; std::invalid_argument listing the registered ones for another name.
const MethodInfo& method_info(const std::string& name);
/// Parses "NAME[:KEY=VALUE,...]" (SPEC) and makes the method. std::invalid_argument names an
/// unknown method or key, or a malformed item.
std::shared_ptr<const Accelerator> make_method(const std::string& spec);

/// SPEC with every "KEY=A|B|..." item expanded: one spec per combination of the listed values, in
/// order (the first knob varies slowest). A spec without '|' is itself. std::invalid_argument for an
/// empty alternative or more than 1000 combinations.
std::vector<std::string> expand_method_spec(const std::string& spec);

/// The parameter KEY of PARAMS as a number in [LO, HI], or FALLBACK when absent; for `make`.
double number_param(const MethodParams& params, const std::string& key, double fallback, double lo,
                    double hi);

/// The tokens of one model call on LATENTS [C, F, H, W]: its patches under MODEL's patch size.
int64_t call_tokens(const Denoiser& model, const at::Tensor& latents);
/// Throws std::invalid_argument naming METHOD and MODEL's family when the family has no
/// forward_with_policy (the step-caching methods' seam; a sequence-parallel model has none).
void require_stack_policy(const Denoiser& model, const std::string& method);

/// The action word of a token-wise call at BUDGET ("tokens:0.35"; BranchState::actions()).
std::string tokens_action(double budget);

/// TeaCache's rescale polynomial (the retention variant's when RET) at a relative change X.
double teacache_rescale(bool ret, double x);
/// MagCache's ratio of STEP of STEPS from RATIOS calibrated at another step count (nearest).
double magcache_ratio(const std::vector<double>& ratios, int64_t step, int64_t steps);

/// ToCa's score of each token: (1 + ENTROPY) normalised over the tokens, plus W_STALE x STALE (calls
/// since the token was computed) / INTERVAL. The top share is computed.
at::Tensor toca_score(const at::Tensor& entropy, const at::Tensor& stale, int64_t interval, double w_stale);

/// ASTRAEA with a schedule in memory (what --budget, --schedule and the tuner make).
std::shared_ptr<const Accelerator> make_astraea(const TokenBudgetSchedule& schedule);

/// The methods of the table (engine/dense.cpp, engine/astraea.cpp, ...).
MethodInfo dense_method();
MethodInfo astraea_method();
MethodInfo teacache_method();
MethodInfo magcache_method();
MethodInfo easycache_method();
MethodInfo fbcache_method();
MethodInfo pab_method();
MethodInfo toca_method();

}  // namespace astraea::engine
