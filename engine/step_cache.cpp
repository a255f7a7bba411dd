#include "engine/step_cache.h"

#include <ATen/ATen.h>

#include <cmath>
#include <stdexcept>

#include "engine/methods.h"
#include "model/denoiser.h"

namespace astraea::engine {

at::Tensor ResidualCache::run(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                              const at::Tensor& context) {
  require_stack_policy(model, "step-caching methods");
  begin_call(call);
  auto out = model.forward_with_policy(latents, call.timestep, context, *this);
  computed_tokens_ += call_tokens(model, latents) * (reused_ ? from_ : model.config().layers);
  reused_calls_ += reused_ ? 1 : 0;
  act(reused_ ? "reuse@" + std::to_string(from_) : "dense");
  return out;
}

at::Tensor ResidualCache::before_block(const StackPoint& p) {
  if (p.block < from_) {
    seen(p);
    return {};
  }
  if (p.block != from_) return {};
  const bool kept = residual_.defined() && residual_.sizes() == p.x.sizes();
  if (reuse(p, call_, kept) && kept) {
    reused_ = true;
    return residual_;
  }
  input_ = p.x.clone();  // the blocks update the stream in place
  return {};
}

void ResidualCache::after_stack(const at::Tensor& x) {
  residual_ = x - input_;
  input_ = at::Tensor();
  computed(residual_);
}

int64_t ResidualCache::bytes() const {
  return residual_.defined() ? static_cast<int64_t>(residual_.nbytes()) : 0;
}

double relative_l1(const at::Tensor& a, const at::Tensor& b) {
  const double diff = (a - b).abs().mean().item<double>();
  const double base = b.abs().mean().item<double>();
  if (base == 0) return diff == 0 ? 0.0 : INFINITY;
  return diff / base;
}

bool forced_step(const CallInfo& call, int64_t warmup, int64_t last_dense) {
  return call.step < warmup || (last_dense > 0 && call.step >= call.steps - last_dense);
}

}  // namespace astraea::engine
