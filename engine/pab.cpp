// Pyramid Attention Broadcast (PAB, docs/peers.md): inside a window of timesteps, each block
// computes its self-attention every `self_range` calls and its cross-attention every `cross_range`
// calls, and broadcasts the last output to the calls between; everything else runs every call.
// Wan has one full 3D self-attention, so PAB's spatial and temporal ranges are one here.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "engine/methods.h"
#include "model/denoiser.h"

namespace astraea::engine {
namespace {

/// One attention kind's broadcast: a range and the timestep window it applies in.
struct Broadcast {
  int64_t range = 1;      ///< compute every RANGE calls (1: every call, no broadcast)
  double lo = 0, hi = 0;  ///< window of timesteps (0..1000) in which it broadcasts
  /// Whether the call at TIMESTEP, the COUNT-th call of the branch (0-based), reuses the kept output.
  bool reuses(double timestep, int64_t count) const {
    return range > 1 && timestep >= lo && timestep <= hi && count % range != 0;
  }
};

struct PabParams {
  Broadcast self, cross;
};

class PabBranch : public BranchState, public StackPolicy {
 public:
  explicit PabBranch(const PabParams& p) : self_(p.self), cross_(p.cross) {}
  at::Tensor before_block(const StackPoint&) override { return {}; }
  void after_stack(const at::Tensor&) override {}
  BlockReuse* attention(int64_t block) override {
    if (blocks_.size() <= static_cast<size_t>(block)) blocks_.resize(block + 1);
    auto& r = blocks_[block];
    r.self = reuse_self_ && r.self_out.defined();
    r.cross = reuse_cross_ && r.cross_out.defined();
    self_reused_ += r.self;
    cross_reused_ += r.cross;
    return &r;
  }
  int64_t bytes() const override {
    int64_t n = 0;
    for (const auto& b : blocks_)
      for (const auto* t : {&b.self_out, &b.cross_out})
        n += t->defined() ? static_cast<int64_t>(t->nbytes()) : 0;
    return n;
  }
  at::Tensor run(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                 const at::Tensor& context) {
    require_stack_policy(model, "PAB");
    reuse_self_ = self_.reuses(call.timestep, count_);
    reuse_cross_ = cross_.reuses(call.timestep, count_);
    ++count_;
    self_reused_ = cross_reused_ = 0;
    auto out = model.forward_with_policy(latents, call.timestep, context, *this);
    computed_tokens_ += model.config().layers * call_tokens(model, latents);  // PAB saves attention only
    act(self_reused_ + cross_reused_ == 0
            ? std::string("dense")
            : "pab:" + std::to_string(self_reused_) + "," + std::to_string(cross_reused_));
    return out;
  }

 private:
  Broadcast self_, cross_;
  bool reuse_self_ = false, reuse_cross_ = false;
  int64_t count_ = 0, self_reused_ = 0, cross_reused_ = 0;
  std::vector<BlockReuse> blocks_;
};

}  // namespace

MethodInfo pab_method() {
  return {
      "pab",
      "Pyramid Attention Broadcast: within a timestep window, self- and cross-attention outputs are "
      "computed every range calls and broadcast to the calls between",
      {{"self_range", "2", "compute self-attention every this many calls inside its window"},
       {"self_lo", "100", "self-attention window: lowest timestep (0..1000)"},
       {"self_hi", "800", "self-attention window: highest timestep"},
       {"cross_range", "6", "compute cross-attention every this many calls inside its window"},
       {"cross_lo", "100", "cross-attention window: lowest timestep"},
       {"cross_hi", "900", "cross-attention window: highest timestep"}},
      [](const MethodParams& p) -> std::shared_ptr<const Accelerator> {
        Broadcast self{static_cast<int64_t>(number_param(p, "self_range", 2, 1, 1e6)),
                       number_param(p, "self_lo", 100, 0, 1000), number_param(p, "self_hi", 800, 0, 1000)};
        Broadcast cross{static_cast<int64_t>(number_param(p, "cross_range", 6, 1, 1e6)),
                        number_param(p, "cross_lo", 100, 0, 1000), number_param(p, "cross_hi", 900, 0, 1000)};
        if (self.lo > self.hi || cross.lo > cross.hi) {
          throw std::invalid_argument("method pab: a window's lo is above its hi");
        }
        return std::make_shared<const BranchMethod<PabBranch, PabParams>>(
            "pab", PabParams{self, cross},
            nlohmann::json{{"self_range", self.range},
                           {"self_lo", self.lo},
                           {"self_hi", self.hi},
                           {"cross_range", cross.range},
                           {"cross_lo", cross.lo},
                           {"cross_hi", cross.hi}});
      }};
}

}  // namespace astraea::engine
