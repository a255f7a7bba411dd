// ASTRAEA's token-wise method (the paper's, docs/schedule.md): at each step every block scores its
// tokens and computes only the top `budget` share; the rest keep their cached outputs. Budgets come
// per step from a schedule (a file, or one budget after some dense steps); 0 skips the step.
#include <ATen/ATen.h>

#include <cmath>
#include <optional>

#include "engine/methods.h"
#include "engine/schedule.h"
#include "model/denoiser.h"

namespace astraea::engine {
namespace {

class TokenBranch : public BranchState {
 public:
  int64_t computed_tokens() const override { return state.computed_tokens; }
  int64_t bytes() const override { return state.bytes(); }
  TokenEngineState state;
};

class Astraea : public Accelerator {
 public:
  // Either SCHEDULE's budgets (FROM_FILE: where they came from), or BUDGET after DENSE_STEPS steps.
  Astraea(std::optional<TokenBudgetSchedule> schedule, std::string from_file, double budget,
          int64_t dense_steps, SelectionParams selection)
      : schedule_(std::move(schedule)),
        from_file_(std::move(from_file)),
        budget_(budget),
        dense_steps_(dense_steps),
        selection_(schedule_ ? schedule_->selection : selection) {}

  std::string name() const override { return "astraea"; }
  nlohmann::json params() const override {
    nlohmann::json p{{"w_lse", selection_.w_lse},
                     {"w_stale", selection_.w_stale},
                     {"tile", selection_.tile},
                     {"min_frame_share", selection_.min_frame_share},
                     {"reuse_kv", selection_.reuse_kv}};
    if (selection_.segments > 1) p["segments"] = selection_.segments;
    if (schedule_) {
      p["budgets"] = schedule_->budgets;
      if (!from_file_.empty()) p["schedule"] = from_file_;
    } else {
      p["budget"] = budget_;
      p["dense_steps"] = dense_steps_;
    }
    return p;
  }
  std::string can_run(const std::string& model, int64_t steps) const override {
    if (!schedule_) return {};
    try {
      validate_schedule(*schedule_, from_file_.empty() ? "schedule" : from_file_, model, steps);
    } catch (const std::exception& e) {
      return e.what();
    }
    return {};
  }
  std::unique_ptr<BranchState> new_branch() const override { return std::make_unique<TokenBranch>(); }
  bool skips(const CallInfo& call) const override { return budget_at(call) == 0.0; }
  at::Tensor call(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                  const at::Tensor& context, BranchState& branch) const override {
    auto& state = static_cast<TokenBranch&>(branch).state;
    const int64_t before = state.computed_tokens, total_before = state.total_tokens;
    const double budget = budget_at(call);
    if (budget == kReuseBudget) return reuse(model, latents, call, context, state, branch);
    auto out = model.forward_tokenwise(latents, call.timestep, context, budget, selection_, state);
    // A first call (no caches yet) computes every token whatever its budget.
    const bool dense = state.computed_tokens - before == state.total_tokens - total_before;
    branch.act(dense ? std::string("dense") : tokens_action(budget));
    return out;
  }

 private:
  // A step-cache decision: the last residual of the block stack stands in for the blocks.
  static at::Tensor reuse(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                          const at::Tensor& context, TokenEngineState& state, BranchState& branch) {
    if (!model.has_stack_policy() || !state.stack_residual.defined()) {
      throw std::invalid_argument("a \"reuse\" step needs one process and an earlier computed step (" +
                                  model.config().family + ")");
    }
    struct StandIn : StackPolicy {
      at::Tensor residual;
      at::Tensor before_block(const StackPoint&) override { return residual; }
      void after_stack(const at::Tensor&) override {}
    } stand_in;
    stand_in.residual = state.stack_residual;
    state.last_output = model.forward_with_policy(latents, call.timestep, context, stand_in);
    branch.act("reuse@0");
    return state.last_output;
  }
  double budget_at(const CallInfo& call) const {
    if (schedule_) return schedule_->budgets.at(static_cast<size_t>(call.step));
    return call.step < dense_steps_ ? 1.0 : budget_;
  }
  std::optional<TokenBudgetSchedule> schedule_;
  std::string from_file_;
  double budget_ = 1;
  int64_t dense_steps_ = 0;
  SelectionParams selection_;
};

}  // namespace

std::shared_ptr<const Accelerator> make_astraea(const TokenBudgetSchedule& schedule) {
  return std::make_shared<const Astraea>(schedule, "", 1.0, 0, schedule.selection);
}

MethodInfo astraea_method() {
  return {"astraea",
          "the top `budget` share of tokens in every block, by attention log-sum-exp x change + staleness "
          "(the paper's)",
          {{"budget", "", "token budget in [0, 1] at every step after dense_steps (or give schedule)"},
           {"dense_steps", "2", "dense steps before budget applies"},
           {"schedule", "", "a schedule file (docs/schedule.md): one budget per step"},
           {"w_lse", "1", "weight of log-sum-exp x input change in the score"},
           {"w_stale", "0.1", "weight of the staleness term"},
           {"tile", "1", "select runs of this many consecutive tokens"},
           {"min_frame_share", "0", "every frame keeps at least this share of its tokens fresh"},
           {"reuse_kv", "0", "1: unselected tokens keep cached keys and values too"},
           {"segments", "1",
            "select the top share of each of this many equal runs of tokens, as that many ranks do"}},
          [](const MethodParams& p) -> std::shared_ptr<const Accelerator> {
            SelectionParams s;
            s.w_lse = number_param(p, "w_lse", s.w_lse, -1e6, 1e6);
            s.w_stale = number_param(p, "w_stale", s.w_stale, -1e6, 1e6);
            s.tile = static_cast<int64_t>(number_param(p, "tile", 1, 1, 1 << 20));
            s.min_frame_share = number_param(p, "min_frame_share", 0, 0, 1);
            s.reuse_kv = number_param(p, "reuse_kv", 0, 0, 1) != 0;
            s.segments = static_cast<int64_t>(number_param(p, "segments", 1, 1, 4096));
            const auto file = p.find("schedule");
            if (file != p.end()) {
              if (p.count("budget") || p.count("dense_steps")) {
                throw std::invalid_argument(
                    "method astraea: give schedule or budget (with dense_steps), not both");
              }
              std::optional<TokenBudgetSchedule> schedule;
              try {
                schedule = read_schedule(file->second);  // checked against the run in can_run
              } catch (const std::exception& e) {
                throw std::invalid_argument(e.what());  // names the file and what is wrong
              }
              return std::make_shared<const Astraea>(std::move(*schedule), file->second, 1.0, 0, s);
            }
            if (!p.count("budget"))
              throw std::invalid_argument("method astraea needs budget=B or schedule=FILE");
            return std::make_shared<const Astraea>(
                std::nullopt, "", number_param(p, "budget", 1, 0, 1),
                static_cast<int64_t>(number_param(p, "dense_steps", 2, 0, 1e6)), s);
          }};
}

}  // namespace astraea::engine
