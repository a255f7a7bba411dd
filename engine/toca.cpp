// ToCa, token-wise feature caching (docs/peers.md; after ToCa's Open-Sora version): every
// `interval` calls, and on the first `warmup` steps, a call computes everything and keeps each
// block's outputs. Between them each block reuses its whole self-attention output, and runs its
// cross-attention and feed-forward on the top `ratio` share of tokens only, by ToCa's score: the
// entropy of the token's cross-attention map (normalised over the tokens, 1 + H) plus
// `w_stale` x the calls since the token was computed / interval; the rest keep their outputs.
// Where it differs from ToCa's own: one map per branch (ToCa averages cond and uncond), no
// self-attention score (it needs the full attention map, which the attention kernels never form),
// and the same ratio for cross-attention and feed-forward.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/methods.h"
#include "model/denoiser.h"

namespace astraea::engine {
namespace {

struct ToCaParams {
  double ratio = 0.1;
  int64_t interval = 3, warmup = 3;
  double w_stale = 0.25;
};

class ToCaBranch : public BranchState, public StackPolicy {
 public:
  explicit ToCaBranch(const ToCaParams& p) : p_(p) {}
  at::Tensor before_block(const StackPoint&) override { return {}; }
  void after_stack(const at::Tensor&) override {}
  BlockReuse* attention(int64_t block) override {
    if (blocks_.size() <= static_cast<size_t>(block)) blocks_.resize(block + 1);
    auto& b = blocks_[block];
    auto& r = b.reuse;
    r.tokenwise = true;
    r.cross = false;
    if (full_) {
      r.self = false;
      r.fresh = at::Tensor();
      computed_ += n_;
      return &r;
    }
    r.self = true;
    const auto score = toca_score(r.entropy, b.stale, p_.interval, p_.w_stale);
    const int64_t k =
        std::clamp<int64_t>(static_cast<int64_t>(std::ceil(p_.ratio * static_cast<double>(n_))), 1, n_);
    r.fresh = std::get<0>(std::get<1>(score.topk(k)).sort());
    computed_ += k;
    return &r;
  }
  int64_t bytes() const override {
    int64_t n = 0;
    for (const auto& b : blocks_)
      for (const auto* t :
           {&b.reuse.self_out, &b.reuse.cross_out, &b.reuse.ffn_out, &b.reuse.entropy, &b.stale})
        n += t->defined() ? static_cast<int64_t>(t->nbytes()) : 0;
    return n;
  }

  at::Tensor run(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                 const at::Tensor& context) {
    require_stack_policy(model, "ToCa");
    n_ = call_tokens(model, latents);
    full_ = call.step < p_.warmup || count_ >= p_.interval || blocks_.empty() ||
            blocks_.front().reuse.ffn_out.size(1) != n_;
    count_ = full_ ? 1 : count_ + 1;  // the calls since the last full one
    computed_ = 0;
    auto out = model.forward_with_policy(latents, call.timestep, context, *this);
    for (auto& b : blocks_) {
      if (full_ || !b.stale.defined()) {
        b.stale = at::zeros({n_}, b.reuse.entropy.options());
      } else {
        b.stale.add_(1.0).index_fill_(0, b.reuse.fresh, 0.0);
      }
    }
    computed_tokens_ += computed_;
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "toca:%.4g", p_.ratio);
    act(full_ ? std::string("dense") : std::string(ratio));
    return out;
  }

 private:
  struct Block {
    BlockReuse reuse;
    at::Tensor stale;  // [N] float: calls since the token was computed
  };
  ToCaParams p_;
  std::vector<Block> blocks_;
  bool full_ = true;
  int64_t count_ = 0, n_ = 0, computed_ = 0;
};

}  // namespace

at::Tensor toca_score(const at::Tensor& entropy, const at::Tensor& stale, int64_t interval, double w_stale) {
  const auto h = entropy + 1.0;
  return h / h.norm() + w_stale * stale / static_cast<double>(interval);
}

MethodInfo toca_method() {
  return {"toca",
          "ToCa: a full call every interval calls; between them each block reuses its self-attention and "
          "computes cross-attention and feed-forward on the top ratio of tokens by cross-attention entropy "
          "and staleness",
          {{"ratio", "0.1", "share of tokens computed between full calls"},
           {"interval", "3", "a full call every this many calls (ToCa's N)"},
           {"warmup", "3", "steps always computed first"},
           {"w_stale", "0.25", "weight of the staleness term (calls since computed / interval)"}},
          [](const MethodParams& m) -> std::shared_ptr<const Accelerator> {
            ToCaParams p;
            p.ratio = number_param(m, "ratio", 0.1, 0, 1);
            p.interval = static_cast<int64_t>(number_param(m, "interval", 3, 1, 1e6));
            p.warmup = static_cast<int64_t>(number_param(m, "warmup", 3, 1, 1e6));
            p.w_stale = number_param(m, "w_stale", 0.25, 0, 1e6);
            return std::make_shared<const BranchMethod<ToCaBranch, ToCaParams>>(
                "toca", p,
                nlohmann::json{{"ratio", p.ratio},
                               {"interval", p.interval},
                               {"warmup", p.warmup},
                               {"w_stale", p.w_stale}});
          }};
}

}  // namespace astraea::engine
