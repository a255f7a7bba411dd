// Timing that can be trusted, after nvbench's protocol: warm up, then repeat until the relative
// noise falls under a threshold or a time limit runs out, and report median, min, max and noise
// together with the machine state (card, clocks, driver and library versions) that produced them.
// Several variants (the budgets of a profile) are timed interleaved, round-robin in a shuffled
// order each round, as Google Benchmark's random interleaving does, so that a change in the
// machine's load falls on all of them alike instead of deciding one.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace astraea::profiler {

/// Times one call of a function: CUDA events on the GPU, the steady clock on the CPU.
class IntervalTimer {
 public:
  virtual ~IntervalTimer() = default;
  /// "cuda-event" or "wall".
  virtual std::string clock() const = 0;
  virtual double time_ms(const std::function<void()>& fn) = 0;
};

/// The timer for DEVICE.
std::unique_ptr<IntervalTimer> make_timer(const at::Device& device);

struct TimingOptions {
  int warmup = 2;             ///< untimed calls first (of each variant)
  int min_reps = 5;           ///< never stop before this many samples (rounds, when interleaved)
  int max_reps = 200;         ///< never take more
  double max_seconds =
      30.0;             ///< time limit per variant: stop once the timed calls have taken this long in all
  double noise = 0.02;  ///< stop once every variant's relative standard deviation is under this
};

struct TimingStats {
  double median_ms = 0, min_ms = 0, max_ms = 0, mean_ms = 0;
  double noise = 0;  ///< standard deviation over mean
  int reps = 0;
  bool converged = false;  ///< the noise threshold was met (false: stopped by max_reps or max_seconds)
  std::string clock;
};

/// One timed call of a variant, in milliseconds.
using Sampler = std::function<double()>;

/// Called after each interleaved round: the rounds so far and every variant's statistics now.
using RoundCallback = std::function<void(int rounds, const std::vector<TimingStats>& stats)>;

/// Statistics of SAMPLES (milliseconds; at least one).
TimingStats summarize(std::vector<double> samples);

/// Runs FN under the protocol. `elapsed_s` measures the time limit (default: the steady clock);
/// tests pass their own.
TimingStats measure(const std::function<void()>& fn, IntervalTimer& timer, const TimingOptions& options,
                    const std::function<double()>& elapsed_s = {});

/// Times VARIANTS interleaved: `warmup` untimed samples of each, then rounds that take one sample
/// of every variant in an order shuffled by SEED, until every variant's noise is under the target
/// (after min_reps rounds), max_reps rounds, or max_seconds x the variants' count have passed.
/// A variant still noisier than the target at the end has `converged` false. `clock` is left to
/// the caller, who knows what the samplers measure.
std::vector<TimingStats> measure_interleaved(const std::vector<Sampler>& variants,
                                             const TimingOptions& options, uint64_t seed = 0,
                                             const std::function<double()>& elapsed_s = {},
                                             const RoundCallback& on_round = {});

/// What a reader needs to judge a number: device name, SM and memory clocks (current and
/// maximum, where the driver answers), driver, CUDA runtime and LibTorch versions, host threads.
nlohmann::json environment(const at::Device& device);

}  // namespace astraea::profiler
