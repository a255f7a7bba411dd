// One guided denoising step: the conditional and the unconditional model call, each on its own
// branch state under the method, then classifier-free guidance. generate, profile, the
// benchmarks and the tuner all step through it.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/accelerator.h"
#include "model/collective.h"

namespace astraea::engine {

class GuidedStep {
 public:
  /// Steps MODEL under METHOD with guidance scale GUIDANCE (1: one call a step, no uncond branch).
  /// With CFG_GROUP (two ranks, or two halves of the ranks, guided only), CFG parallelism: rank 0
  /// of it computes the conditional branch, rank 1 the unconditional one, and they exchange only
  /// the model outputs; each keeps the state of its own branch.
  GuidedStep(const Denoiser& model, std::shared_ptr<const Accelerator> method, double guidance,
             std::shared_ptr<const Collective> cfg_group = nullptr);

  /// The guided velocity at LATENTS for CALL, given the embedded COND and UNCOND contexts. A step
  /// the method skips returns the last step's velocity without a model call.
  at::Tensor operator()(const at::Tensor& latents, const CallInfo& call, const at::Tensor& cond,
                        const at::Tensor& uncond);

  const Accelerator& method() const { return *method_; }
  bool guided() const { return guidance_ != 1.0; }
  int64_t model_calls() const { return model_calls_; }
  int64_t skipped_steps() const { return skipped_steps_; }
  /// Block-token computations of both branches so far.
  int64_t computed_tokens() const;
  /// Bytes of both branches' caches.
  int64_t cache_bytes() const;
  /// Each branch's report ({"cond": ..., "uncond": ...}; BranchState::report()), or null if none.
  nlohmann::json report() const;
  /// What each step did: "skip", or the action of each branch's call joined by '+' (conditional
  /// first; BranchState::actions() says the words).
  const std::vector<std::string>& step_actions() const { return step_actions_; }

 private:
  const Denoiser& model_;
  std::shared_ptr<const Accelerator> method_;
  double guidance_;
  std::shared_ptr<const Collective> cfg_group_;
  std::array<std::unique_ptr<BranchState>, 2> branches_;  // cond, uncond
  at::Tensor last_;
  int64_t model_calls_ = 0, skipped_steps_ = 0;
  std::vector<std::string> step_actions_;
  // The action of BRANCH's last call, or "?" when its method recorded none.
  std::string last_action(int branch) const;
};

}  // namespace astraea::engine
