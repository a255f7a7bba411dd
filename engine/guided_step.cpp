#include "engine/guided_step.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "model/sampler.h"

namespace astraea::engine {

GuidedStep::GuidedStep(const Denoiser& model, std::shared_ptr<const Accelerator> method, double guidance)
    : model_(model), method_(std::move(method)), guidance_(guidance) {
  if (!method_) throw std::invalid_argument("a guided step needs a method");
  branches_[0] = method_->new_branch();
  if (guided()) branches_[1] = method_->new_branch();
}

at::Tensor GuidedStep::operator()(const at::Tensor& latents, const CallInfo& call, const at::Tensor& cond,
                                  const at::Tensor& uncond) {
  if (method_->skips(call)) {
    if (!last_.defined())
      throw std::invalid_argument("method " + method_->name() + " skips the first step it runs");
    ++skipped_steps_;
    return last_;
  }
  auto v = method_->call(model_, latents, call, cond, *branches_[0]);
  ++model_calls_;
  if (guided()) {
    v = classifier_free_guidance(v, method_->call(model_, latents, call, uncond, *branches_[1]), guidance_);
    ++model_calls_;
  }
  last_ = v;
  return v;
}

int64_t GuidedStep::computed_tokens() const {
  int64_t n = 0;
  for (const auto& b : branches_)
    if (b) n += b->computed_tokens();
  return n;
}

int64_t GuidedStep::cache_bytes() const {
  int64_t n = 0;
  for (const auto& b : branches_)
    if (b) n += b->bytes();
  return n;
}

}  // namespace astraea::engine
