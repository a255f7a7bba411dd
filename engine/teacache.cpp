// TeaCache (docs/peers.md; after TeaCache4Wan2.1): each branch accumulates the relative L1 change
// of the timestep embedding between its calls, rescaled by a polynomial fitted to how much the
// model output then changes; while the sum stays under `threshold`, the residual of the whole
// block stack kept from the last full call stands in for the blocks, and a full call resets it.
#include <ATen/ATen.h>

#include <array>
#include <string>

#include "engine/methods.h"
#include "engine/step_cache.h"

namespace astraea::engine {
namespace {

// Rescale polynomials, highest degree first, as TeaCache publishes them for Wan2.1-T2V-1.3B
// (TeaCache4Wan2.1/teacache_generate.py): the plain variant compares the embedding e, the one with
// retention steps compares the block modulation e0.
constexpr std::array<double, 5> kWan13bPlain = {2.39676752e+03, -1.31110545e+03, 2.01331979e+02,
                                                -8.29855975e+00, 1.37887774e-01};
constexpr std::array<double, 5> kWan13bRet = {-5.21862437e+04, 9.23041404e+03, -5.28275948e+02,
                                              1.36987616e+01, -4.99875664e-02};

struct TeaParams {
  double threshold = 0.08;
  bool ret = false;       ///< the retention-steps variant: e0 compared, the first 5 steps computed
  bool identity = false;  ///< no rescaling (models the published polynomials were not fitted to)
  int64_t warmup() const { return ret ? 5 : 1; }
  int64_t last_dense() const { return ret ? 0 : 1; }
  double rescale(double x) const {
    if (identity) return x;
    double y = 0;
    for (double c : ret ? kWan13bRet : kWan13bPlain) y = y * x + c;
    return y;
  }
};

class TeaBranch : public ResidualCache {
 public:
  explicit TeaBranch(const TeaParams& p) : ResidualCache(0), p_(p) {}
  double accumulated = 0;  ///< after the last call

 private:
  bool reuse(const StackPoint& s, const CallInfo& call, bool kept) override {
    const auto input = (p_.ret ? s.e0 : s.e).clone();
    bool hit = false;
    if (!kept || forced_step(call, p_.warmup(), p_.last_dense()) || !previous_.defined()) {
      accumulated = 0;
    } else {
      accumulated += p_.rescale(relative_l1(input, previous_));
      hit = accumulated < p_.threshold;
      if (!hit) accumulated = 0;
    }
    previous_ = input;  // every call, reused or not
    return hit;
  }
  TeaParams p_;
  at::Tensor previous_;
};

}  // namespace

/// TeaCache's rescale polynomial of one variant at X (exposed for the tests' hand computation).
double teacache_rescale(bool ret, double x) {
  TeaParams p;
  p.ret = ret;
  return p.rescale(x);
}

MethodInfo teacache_method() {
  return {"teacache",
          "TeaCache: while the accumulated rescaled change of the timestep embedding stays under threshold, "
          "the whole block stack reuses its last residual",
          {{"threshold", "0.08", "accumulated rescaled relative L1 change under which the blocks are reused"},
           {"ret_steps", "0",
            "1: the retention variant (compares e0, first 5 steps computed, no forced last step)"},
           {"coefficients", "wan2.1-1.3b", "rescale polynomial: wan2.1-1.3b (published) or identity"}},
          [](const MethodParams& m) -> std::shared_ptr<const Accelerator> {
            TeaParams p;
            p.threshold = number_param(m, "threshold", 0.08, 0, 1e6);
            p.ret = number_param(m, "ret_steps", 0, 0, 1) != 0;
            const auto c = m.find("coefficients");
            if (c != m.end() && c->second != "wan2.1-1.3b" && c->second != "identity") {
              throw std::invalid_argument("parameter coefficients=" + c->second +
                                          " is not wan2.1-1.3b or identity");
            }
            p.identity = c != m.end() && c->second == "identity";
            return std::make_shared<const BranchMethod<TeaBranch, TeaParams>>(
                "teacache", p,
                nlohmann::json{{"threshold", p.threshold},
                               {"ret_steps", p.ret ? 1 : 0},
                               {"coefficients", p.identity ? "identity" : "wan2.1-1.3b"}});
          }};
}

}  // namespace astraea::engine
