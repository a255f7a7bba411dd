// How one denoising step is computed: the seam every acceleration method plugs into (dense,
// ASTRAEA's token-wise engine, and the peers), after ggml's backend interface: a few calls, a
// registry by name (engine/methods.h), and callers that never name a concrete method.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace astraea {
class Denoiser;
}

namespace astraea::engine {

class BranchState;

/// Where a model call stands in the sampling loop.
struct CallInfo {
  int64_t step = 0;     ///< 0-based
  int64_t steps = 0;    ///< of the whole run
  double timestep = 0;  ///< the model's timestep, 0..1000
  int branch = 0;       ///< 0: the conditional (or only) branch, 1: the unconditional one
  /// On an unconditional call: the conditional branch's state, when this process holds it (not
  /// under CFG parallelism), for methods that decide per pair of calls (EasyCache).
  const BranchState* cond = nullptr;
};

/// What one guidance branch keeps between steps under a method (its caches), and what it did.
class BranchState {
 public:
  virtual ~BranchState() = default;
  /// Block-token computations done so far (a dense call does layers x tokens of them).
  virtual int64_t computed_tokens() const { return computed_tokens_; }
  /// Bytes of the branch's caches.
  virtual int64_t bytes() const { return 0; }
  /// What each model call on the branch did, in order (docs/peers.md): "dense"; "tokens:B" (the
  /// token-wise engine at budget B); "reuse@K" (blocks 0..K-1 computed, a kept residual stood in
  /// for the rest; K = 0: no block ran); "pab:S,C" (every block ran, S of them reusing their
  /// self-attention output and C their cross-attention output). What a latency table prices.
  const std::vector<std::string>& actions() const { return actions_; }
  /// What the method reports of the branch after a run (MagCache's calibration), or null.
  virtual nlohmann::json report() const { return nullptr; }
  /// Records one call's action.
  void act(std::string action) { actions_.push_back(std::move(action)); }

 protected:
  int64_t computed_tokens_ = 0;
  std::vector<std::string> actions_;
};

/// An acceleration method, configured. Stateless between runs: each run asks for fresh branch
/// state, so one instance serves every run (and every thread) at once.
class Accelerator {
 public:
  virtual ~Accelerator() = default;
  /// The registered name ("dense", "astraea", ...).
  virtual std::string name() const = 0;
  /// The parameters this instance runs with, as runs record them.
  virtual nlohmann::json params() const = 0;
  /// Whether it can run STEPS steps of the preset MODEL: "" if so, else why not, naming the
  /// parameter. A tuner rejects a candidate with it before launching anything.
  virtual std::string can_run(const std::string& model, int64_t steps) const = 0;
  /// Fresh state for one guidance branch.
  virtual std::unique_ptr<BranchState> new_branch() const = 0;
  /// Whether CALL's whole step is skipped: no model call on any branch, the last guided output
  /// reused.
  virtual bool skips(const CallInfo& call) const = 0;
  /// One model call on BRANCH: the velocity for LATENTS [C, F, H, W] given the embedded CONTEXT.
  virtual at::Tensor call(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                          const at::Tensor& context, BranchState& branch) const = 0;
};

}  // namespace astraea::engine
