// What the step-caching methods share (TeaCache, MagCache, First-Block Cache): a branch that keeps
// the residual its last full call added over blocks FROM.., and stands in for those blocks with it
// when its method's rule says so at block FROM. Each method is its rule, in its own file.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "engine/accelerator.h"
#include "model/stack_policy.h"

namespace astraea::engine {

class ResidualCache : public BranchState, public StackPolicy {
 public:
  explicit ResidualCache(int64_t from) : from_(from) {}

  /// One model call through the policy: counts the blocks it computed and records the action
  /// ("dense", or "reuse@FROM").
  at::Tensor run(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                 const at::Tensor& context);

  /// Starts a call at CALL without a model (run() does it; tests drive the rule by hand with it).
  void begin_call(const CallInfo& call) {
    call_ = call;
    reused_ = false;
  }
  /// Whether the current call stood in for the blocks.
  bool reused() const { return reused_; }

  at::Tensor before_block(const StackPoint& p) final;
  void after_stack(const at::Tensor& x) final;
  int64_t bytes() const override;
  /// Calls that stood in for the blocks, and that computed them.
  int64_t reused_calls() const { return reused_calls_; }

 protected:
  /// The method's rule at block FROM of every call: whether to stand in with the kept residual.
  /// KEPT says whether there is one (none before the first full call: then the answer is ignored
  /// and the call computes every block, but the rule still sees it).
  virtual bool reuse(const StackPoint& p, const CallInfo& call, bool kept) = 0;
  /// Sees each block before FROM (First-Block Cache keeps the stack's input).
  virtual void seen(const StackPoint& p) { (void)p; }
  /// After a call that computed every block: the residual it keeps (RESIDUAL, [1, N, D]).
  virtual void computed(const at::Tensor& residual) { (void)residual; }
  int64_t from() const { return from_; }

 private:
  int64_t from_;
  CallInfo call_;
  bool reused_ = false;
  int64_t reused_calls_ = 0;
  at::Tensor input_, residual_;  // the input of block FROM at the last full call, and its residual
};

/// Mean absolute difference of A and B over the mean absolute value of B: the relative L1 change
/// that TeaCache and First-Block Cache threshold (0 when B is all zero and A equals it).
double relative_l1(const at::Tensor& a, const at::Tensor& b);

/// Whether a method that reuses between steps must compute CALL anyway: the first WARMUP steps
/// and, when LAST_DENSE > 0, the last LAST_DENSE steps (the peers' retention and cutoff steps).
bool forced_step(const CallInfo& call, int64_t warmup, int64_t last_dense);

}  // namespace astraea::engine
