// Flow-matching sampling with Wan's timestep shift and classifier-free guidance: Euler, and UniPC
// as Wan 2.1's official pipeline samples by default.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace astraea {

/// Wan's shifted flow-matching grid: steps + 1 noise levels from 1 down to 0, each
/// s' = shift * s / (1 + (shift - 1) * s) for s uniform in [1, 0]. The model sees t = 1000 s'.
std::vector<double> flow_sigmas(int64_t steps, double shift);

/// The model's velocity (noise minus data) at `x`, noise level `sigma`, for sampling step `step`.
using VelocityFn = std::function<at::Tensor(const at::Tensor& x, double sigma, int64_t step)>;

/// Called after each step with the step just finished (0-based).
using StepCallback = std::function<void(int64_t step, int64_t steps)>;

/// Integrates dx/ds = v from s = 1 (x = noise) to s = 0 with Euler steps: x += (s_next - s) v.
at::Tensor sample_euler(at::Tensor noise, const std::vector<double>& sigmas, const VelocityFn& velocity,
                        const StepCallback& on_step = {});

/// Wan 2.1's official flow-matching UniPC grid (FlowUniPCMultistepScheduler.set_timesteps with
/// 1000 training steps): noise levels spaced evenly from 0.999 to 0 and shifted as flow_sigmas
/// shifts them, then rounded to float32, and the integer timesteps the model sees at each step
/// (1000 x the level, truncated). SIGMAS has steps + 1 entries, the last 0; TIMESTEPS has steps.
struct UniPcGrid {
  std::vector<double> sigmas;
  std::vector<double> timesteps;
};
UniPcGrid unipc_grid(int64_t steps, double shift);

/// Multistep UniPC on the flow-matching ODE (predicting x0 = x - sigma v; B(h) = e^h - 1, "bh2"),
/// with the UniC corrector after every step but the first, ORDER past values (the official 2),
/// and lower orders in the first and final steps, as the official scheduler steps.
at::Tensor sample_unipc(at::Tensor noise, const std::vector<double>& sigmas, const VelocityFn& velocity,
                        const StepCallback& on_step = {}, int order = 2);

/// A sampler by name ("euler" or "unipc"), its grid and the model time at each step.
struct SamplingPlan {
  std::string sampler;
  std::vector<double> sigmas;     ///< steps + 1 noise levels, 1 (or 0.999) down to 0
  std::vector<double> timesteps;  ///< the model's timestep at each step
};
/// Throws FieldError naming "sampler" for a name it does not know.
SamplingPlan sampling_plan(const std::string& sampler, int64_t steps, double shift);
/// Runs PLAN's sampler from NOISE.
at::Tensor sample(const SamplingPlan& plan, at::Tensor noise, const VelocityFn& velocity,
                  const StepCallback& on_step = {});

/// Classifier-free guidance: uncond + scale * (cond - uncond).
at::Tensor classifier_free_guidance(const at::Tensor& cond, const at::Tensor& uncond, double scale);

}  // namespace astraea
