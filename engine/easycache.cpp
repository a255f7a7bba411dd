// EasyCache (docs/peers.md; after EasyCache4Wan2.1): runtime-adaptive, no calibration. On each
// computed call the branch keeps the transformation Δ = output - input and, between two computed
// conditional calls, the transformation rate k = mean|Δoutput| / mean|Δinput|. After the warm-up,
// each conditional call adds k · mean|input change| / mean|last output| to an estimate of how far
// the output moved; while it stays under `threshold`, the call returns input + Δ without running
// the model, and the unconditional call of the same step does as the conditional one did.
#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "engine/methods.h"
#include "model/denoiser.h"

namespace astraea::engine {
namespace {

struct EasyParams {
  double threshold = 0.05;
  double warmup = 0.2;  ///< share of the first steps computed
  int64_t warmup_steps(int64_t steps) const {
    return static_cast<int64_t>(std::ceil(warmup * static_cast<double>(steps)));
  }
};

double mean_abs(const at::Tensor& t) { return t.abs().mean().item<double>(); }

class EasyBranch : public BranchState {
 public:
  bool reused = false;  ///< the last call's decision (the unconditional call follows the conditional)
  double estimate = 0;  ///< the accumulated output change since the last computed call
  double rate = NAN;    ///< k, once two calls were computed

  explicit EasyBranch(const EasyParams& p) : p_(p) {}

  at::Tensor run(const Denoiser& model, const at::Tensor& x, const CallInfo& call,
                 const at::Tensor& context) {
    reused = decide(p_, x, call);
    at::Tensor out;
    if (reused) {
      out = x + delta_;
      act("reuse");
    } else {
      out = model.forward(x, call.timestep, context);
      if (last_out_.defined()) {
        const double dx = mean_abs(x - last_x_);
        rate = dx > 0 ? mean_abs(out - last_out_) / dx : NAN;
      }
      last_out_ = out;
      last_x_ = x;
      delta_ = out - x;
      computed_tokens_ += model.config().layers * call_tokens(model, x);
      act("dense");
    }
    previous_x_ = x;
    return out;
  }
  int64_t bytes() const override {
    int64_t n = 0;
    for (const auto* t : {&delta_, &last_out_, &last_x_, &previous_x_}) n += t->defined() ? t->nbytes() : 0;
    return n;
  }

 private:
  bool decide(const EasyParams& p, const at::Tensor& x, const CallInfo& call) {
    if (call.branch == 1 && call.cond) return static_cast<const EasyBranch*>(call.cond)->reused;
    const bool forced = call.step < p.warmup_steps(call.steps) || call.step >= call.steps - 1 ||
                        !std::isfinite(rate) || !delta_.defined();
    if (forced) {
      estimate = 0;
      return false;
    }
    estimate += rate * mean_abs(x - previous_x_) / mean_abs(last_out_);
    if (estimate < p.threshold) return true;
    estimate = 0;
    return false;
  }
  EasyParams p_;
  at::Tensor delta_, last_out_, last_x_, previous_x_;
};

}  // namespace

MethodInfo easycache_method() {
  return {
      "easycache",
      "EasyCache: while the output change estimated from the transformation rate stays under threshold, "
      "a call returns its input plus the last computed transformation, without running the model",
      {{"threshold", "0.05", "accumulated estimated relative output change under which the output is reused"},
       {"warmup", "0.2", "share of the first steps always computed (the last step is too)"}},
      [](const MethodParams& m) -> std::shared_ptr<const Accelerator> {
        EasyParams p;
        p.threshold = number_param(m, "threshold", 0.05, 0, 1e6);
        p.warmup = number_param(m, "warmup", 0.2, 0, 1);
        return std::make_shared<const BranchMethod<EasyBranch, EasyParams>>(
            "easycache", p, nlohmann::json{{"threshold", p.threshold}, {"warmup", p.warmup}});
      }};
}

}  // namespace astraea::engine
