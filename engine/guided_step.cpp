#include "engine/guided_step.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>

#include "model/sampler.h"

namespace astraea::engine {

GuidedStep::GuidedStep(const Denoiser& model, std::shared_ptr<const Accelerator> method, double guidance,
                       std::shared_ptr<const Collective> cfg_group)
    : model_(model), method_(std::move(method)), guidance_(guidance), cfg_group_(std::move(cfg_group)) {
  if (!method_) throw std::invalid_argument("a guided step needs a method");
  if (cfg_group_ && (!guided() || cfg_group_->size() != 2)) {
    throw std::invalid_argument("CFG parallelism needs guidance (not 1) and a group of 2, not " +
                                std::to_string(cfg_group_->size()));
  }
  if (cfg_group_) {  // this rank's branch only
    branches_[cfg_group_->rank()] = method_->new_branch();
    return;
  }
  branches_[0] = method_->new_branch();
  if (guided()) branches_[1] = method_->new_branch();
}

at::Tensor GuidedStep::operator()(const at::Tensor& latents, const CallInfo& call, const at::Tensor& cond,
                                  const at::Tensor& uncond) {
  if (method_->skips(call)) {
    if (!last_.defined())
      throw std::invalid_argument("method " + method_->name() + " skips the first step it runs");
    ++skipped_steps_;
    step_actions_.emplace_back("skip");
    return last_;
  }
  if (cfg_group_) {
    const int b = cfg_group_->rank();
    CallInfo mine_call = call;
    mine_call.branch = b;
    auto mine = method_->call(model_, latents, mine_call, b == 0 ? cond : uncond, *branches_[b]);
    ++model_calls_;
    const auto both = cfg_group_->all_gather(mine.unsqueeze(0).contiguous(), 0);  // [cond, uncond]
    last_ = classifier_free_guidance(both[0], both[1], guidance_);
    step_actions_.push_back(last_action(b));  // this rank's branch: the other rank records its own
    return last_;
  }
  auto v = method_->call(model_, latents, call, cond, *branches_[0]);
  ++model_calls_;
  if (guided()) {
    CallInfo second = call;
    second.branch = 1;
    second.cond = branches_[0].get();
    v = classifier_free_guidance(v, method_->call(model_, latents, second, uncond, *branches_[1]), guidance_);
    ++model_calls_;
  }
  step_actions_.push_back(guided() ? last_action(0) + "+" + last_action(1) : last_action(0));
  last_ = v;
  return v;
}

std::string GuidedStep::last_action(int branch) const {
  const auto& a = branches_[branch]->actions();
  return a.empty() ? "?" : a.back();
}

int64_t GuidedStep::computed_tokens() const {
  int64_t n = 0;
  for (const auto& b : branches_)
    if (b) n += b->computed_tokens();
  return n;
}

nlohmann::json GuidedStep::report() const {
  nlohmann::json j = nlohmann::json::object();
  const char* names[] = {"cond", "uncond"};
  for (int b = 0; b < 2; ++b) {
    if (branches_[b] && !branches_[b]->report().is_null()) j[names[b]] = branches_[b]->report();
  }
  return j.empty() ? nlohmann::json() : j;
}

int64_t GuidedStep::cache_bytes() const {
  int64_t n = 0;
  for (const auto& b : branches_)
    if (b) n += b->bytes();
  return n;
}

}  // namespace astraea::engine
