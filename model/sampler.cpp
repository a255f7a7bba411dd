#include "model/sampler.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "io/field_error.h"

namespace astraea {

std::vector<double> flow_sigmas(int64_t steps, double shift) {
  if (steps < 1) throw FieldError("steps", "must be at least 1");
  if (!(shift > 0)) throw FieldError("shift", "must be positive");
  std::vector<double> s(steps + 1);
  for (int64_t i = 0; i <= steps; ++i) {
    const double u = 1.0 - static_cast<double>(i) / static_cast<double>(steps);
    s[i] = shift * u / (1.0 + (shift - 1.0) * u);
  }
  return s;
}

at::Tensor sample_euler(at::Tensor x, const std::vector<double>& sigmas, const VelocityFn& velocity,
                        const StepCallback& on_step) {
  const int64_t steps = static_cast<int64_t>(sigmas.size()) - 1;
  x = x.to(at::kFloat);
  for (int64_t i = 0; i < steps; ++i) {
    auto v = velocity(x, sigmas[i], i);
    x = x + (sigmas[i + 1] - sigmas[i]) * v.to(x.device(), at::kFloat);
    if (on_step) on_step(i, steps);
  }
  return x;
}

SamplingPlan sampling_plan(const std::string& sampler, int64_t steps, double shift) {
  SamplingPlan p{sampler, {}, {}};
  if (sampler == "euler") {
    p.sigmas = flow_sigmas(steps, shift);
    for (int64_t i = 0; i < steps; ++i) p.timesteps.push_back(1000.0 * p.sigmas[i]);
  } else if (sampler == "unipc") {
    auto g = unipc_grid(steps, shift);
    p.sigmas = std::move(g.sigmas);
    p.timesteps = std::move(g.timesteps);
  } else {
    throw FieldError("sampler", "'" + sampler + "' is not euler or unipc");
  }
  return p;
}

at::Tensor sample(const SamplingPlan& plan, at::Tensor noise, const VelocityFn& velocity,
                  const StepCallback& on_step) {
  if (plan.sampler == "unipc") return sample_unipc(std::move(noise), plan.sigmas, velocity, on_step);
  return sample_euler(std::move(noise), plan.sigmas, velocity, on_step);
}

at::Tensor classifier_free_guidance(const at::Tensor& cond, const at::Tensor& uncond, double scale) {
  return uncond + scale * (cond - uncond);
}

}  // namespace astraea
