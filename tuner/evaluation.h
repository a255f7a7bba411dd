// The engine side of a study: schedules of one preset, size and step count run on calibration or
// held-out prompts and scored against dense references; the equal-cost uniform baseline; the
// held-out check of the best schedule; and whole sampling runs timed against dense.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "profiler/timing.h"
#include "quality/metric.h"
#include "tuner/latency_model.h"

namespace astraea {
class Denoiser;
class WanVae;
}

namespace astraea::tuner {

/// A schedule's videos scored against their dense references: each metric's headline (capped, as
/// quality::Metric says) by metric name, averaged over prompts x seeds.
struct Quality {
  std::map<std::string, double> headline;
  /// METRIC's mean headline; 0 when it was not scored.
  double of(const std::string& metric) const;
};

/// The fitness a study maximises: quality::combine of the metrics' mean headlines (PSNR alone,
/// the VBench-proxy total alone, or for both the mean of PSNR / 40 and the total).
double fitness_of(const Quality& q, const quality::MetricList& metrics);

/// What a runner generates: one preset, size and step count, on its devices.
struct RunnerSetup {
  std::string model, weights;  ///< weights as GenerateOptions takes them
  int64_t frames = 0, height = 0, width = 0, steps = 0;
  std::vector<uint64_t> seeds;
  std::vector<std::string> devices;  ///< at least one
  /// Selection segments of every schedule (SelectionParams::segments): the ranks of the deployment
  /// tuned for, whose sequence parallelism selects per shard.
  int64_t segments = 1;
};

/// Runs schedules and scores them: the model is loaded once per device, and the dense reference
/// of each (prompt, seed) is made once, on the first device.
class ScheduleRunner {
 public:
  explicit ScheduleRunner(RunnerSetup setup);
  ~ScheduleRunner();
  const RunnerSetup& setup() const { return setup_; }

  /// Called with each video a run makes.
  using KeepVideo = std::function<void(const std::string& prompt, uint64_t seed, const at::Tensor& video)>;
  /// Makes the dense references of PROMPTS x seeds not made yet. quality() reads them, so call
  /// this first for every prompt set (quality() runs on several threads at once).
  void make_references(const std::vector<std::string>& prompts);
  /// The mean quality of GENOME's videos on PROMPTS x seeds, made on device index DEVICE.
  Quality quality(const Genome& genome, const std::vector<std::string>& prompts, size_t device,
                  const quality::MetricList& metrics, const KeepVideo& keep = {}) const;
  const at::Tensor& reference(const std::string& prompt, uint64_t seed) const;
  /// The mean VBench-proxy total of the dense references of PROMPTS.
  double dense_vbench(const std::vector<std::string>& prompts) const;

 private:
  RunnerSetup setup_;
  std::vector<std::shared_ptr<const Denoiser>> models_;  // one per device
  std::vector<std::shared_ptr<const WanVae>> vaes_;      // and its decoder (null: pixel space, or latents)
  std::map<std::pair<std::string, uint64_t>, at::Tensor> references_;
};

/// The uniform schedule of GENOME's predicted cost under LATENCY: the same DENSE_STEPS dense
/// steps, then one budget for the rest (clamped to [0.01, 1]). Beating it on prompts the search
/// never saw is the point of searching.
Genome equal_cost_uniform(const Genome& genome, const LatencyModel& latency, int64_t dense_steps);

/// The best schedule and its uniform baseline on held-out prompts.
struct HeldOutCheck {
  Quality tuned, uniform;
  bool vbench = false;      ///< VBench-proxy was scored (optical flow in this build, videos large enough)
  double dense_vbench = 0;  ///< the dense references' mean total, when vbench
};

/// Scores BEST and UNIFORM on HELD_OUT (PSNR always, VBench-proxy where it applies). With
/// SAVE_DIR, writes every video (dense, tuned, uniform) and an index.json there.
HeldOutCheck check_held_out(ScheduleRunner& runner, const Genome& best, const Genome& uniform,
                            const std::vector<std::string>& held_out, const std::string& save_dir);

/// Whole sampling runs timed: dense, the tuned and the uniform schedule.
struct MeasuredSpeed {
  profiler::TimingStats dense, tuned, uniform;  ///< milliseconds of sampling
  double noise_target = 0.05;
};

/// Times REPEATS whole sampling runs of each of dense, TUNED and UNIFORM on SETUP's first device
/// (random weights when SETUP.weights is "random"; prompt ""), interleaved in a shuffled order
/// each round, after one warm-up run over every budget used.
MeasuredSpeed measure_speed(const RunnerSetup& setup, const Genome& tuned, const Genome& uniform, int repeats,
                            uint64_t seed);

}  // namespace astraea::tuner
