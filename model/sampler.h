// Flow-matching sampling (Euler) with Wan's timestep shift and classifier-free guidance.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
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

/// Classifier-free guidance: uncond + scale * (cond - uncond).
at::Tensor classifier_free_guidance(const at::Tensor& cond, const at::Tensor& uncond, double scale);

}  // namespace astraea
