// First-Block Cache (ParaAttention's, docs/peers.md): every call computes the first block; when
// its residual moved less than `threshold` (relative L1) from the one of the last call that
// computed everything, a kept residual stands in for all the other blocks.
#include <ATen/ATen.h>

#include "engine/methods.h"
#include "engine/step_cache.h"

namespace astraea::engine {
namespace {

struct FirstBlockParams {
  double threshold = 0.1;
  int64_t warmup = 1, max_skips = 0;
};

class FirstBlockBranch : public ResidualCache {
 public:
  explicit FirstBlockBranch(const FirstBlockParams& p)
      : ResidualCache(1), threshold_(p.threshold), warmup_(p.warmup), max_skips_(p.max_skips) {}
  /// The last rule evaluation: the relative change of the first block's residual.
  double last_change = 0;

 private:
  void seen(const StackPoint& p) override { input_ = p.x.clone(); }  // block 0's input
  bool reuse(const StackPoint& p, const CallInfo& call, bool kept) override {
    auto first = p.x - input_;  // the first block's residual at this call
    input_ = at::Tensor();
    const bool forced = !kept || forced_step(call, warmup_, 0) || (max_skips_ > 0 && skips_ >= max_skips_);
    last_change = kept_.defined() ? relative_l1(first, kept_) : INFINITY;
    const bool hit = !forced && last_change < threshold_;
    if (!hit) kept_ = first;  // compared with the residual of the last full call, as ParaAttention does
    skips_ = hit ? skips_ + 1 : 0;
    return hit;
  }
  double threshold_;
  int64_t warmup_, max_skips_, skips_ = 0;
  at::Tensor input_, kept_;
};

}  // namespace

MethodInfo fbcache_method() {
  return {"fbcache",
          "First-Block Cache: the first block always runs; while its residual changes less than threshold, "
          "the other blocks reuse the last computed residual",
          {{"threshold", "0.1",
            "relative L1 change of the first block's residual under which the rest is reused"},
           {"warmup", "1", "steps always computed first"},
           {"max_skips", "0", "at most this many reusing calls in a row (0: no limit)"}},
          [](const MethodParams& p) -> std::shared_ptr<const Accelerator> {
            FirstBlockParams f;
            f.threshold = number_param(p, "threshold", 0.1, 0, 1e6);
            f.warmup = static_cast<int64_t>(number_param(p, "warmup", 1, 1, 1e6));
            f.max_skips = static_cast<int64_t>(number_param(p, "max_skips", 0, 0, 1e6));
            return std::make_shared<const BranchMethod<FirstBlockBranch, FirstBlockParams>>(
                "fbcache", f,
                nlohmann::json{{"threshold", f.threshold}, {"warmup", f.warmup}, {"max_skips", f.max_skips}});
          }};
}

}  // namespace astraea::engine
