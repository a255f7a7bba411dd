// Training a preset from scratch on the shapes world: flow matching, AdamW with warm-up and a
// cosine schedule, an EMA of the weights, checkpoints that resume where they stopped.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/weights.h"

namespace astraea {

class Denoiser;

/// One clip size of the training mix, with its batch size.
struct TrainSize {
  int64_t frames = 8, height = 32, width = 48, batch = 16;
};

/// Parses "FxHxW:B[,FxHxW:B...]"; throws std::invalid_argument naming `flag`.
std::vector<TrainSize> parse_train_sizes(const std::string& text, const std::string& flag);

struct TrainOptions {
  std::string model = "tiny";
  uint64_t seed = 0;        ///< initial weights and noise
  std::string init;         ///< start from these weights instead of random ones (ignored when resuming)
  uint64_t data_seed = 1;   ///< the clips: step s always sees the same batch
  int64_t steps = 2000;     ///< schedule length
  double time_limit_s = 0;  ///< also ends training, decaying the schedule by elapsed time (0: none)
  std::vector<TrainSize> sizes{TrainSize{}};  ///< cycled step by step
  double lr = 5e-4, min_lr_ratio = 0.05, weight_decay = 0.01, grad_clip = 1.0;
  int64_t warmup = 100;
  double ema = 0.999;             ///< EMA decay (0: no EMA)
  double null_prompt_prob = 0.1;  ///< prompt dropout, for classifier-free guidance
  double noise_shift =
      0;  ///< shift of the logit-normal noise levels (0: the preset's sampling shift; 1: none)
  /// Weight of the direction contrast (0: off). Clips with a moving object, at noise levels of at
  /// least `contrast_min_sigma`, are also denoised under their time-reversed prompt (left and right
  /// swapped, up and down swapped), and a hinge asks that prompt's loss to exceed the true one's by
  /// `contrast_margin` of it. Flow matching alone leaves the direction's sign unused: the data are
  /// symmetric under time reversal, and a clip's own frames tell its direction wherever the noise
  /// lets them.
  double direction_contrast = 0, contrast_margin = 0.05, contrast_min_sigma = 0.5;
  /// Absolute position features (ModelConfig::position_octaves); -1: those of the weights started
  /// from (checkpoint or `init`), else the preset's. Otherwise it must match the weights started from.
  int64_t position_octaves = -1;
  std::string device = "cpu";
  std::string checkpoint_dir;  ///< checkpoints here, and resume from here if one exists
  int64_t checkpoint_every = 500;
  int64_t stop_after = 0;  ///< end this run after this many steps, checkpointed (0: run to the end)
};

struct TrainProgress {
  int64_t step = 0, steps = 0;  ///< steps done, schedule length
  double fraction = 0;          ///< of the schedule (by steps or by time, whichever is further)
  double loss = 0, lr = 0, elapsed_s = 0;
};

struct TrainResult {
  int64_t steps = 0, resumed_at = 0;
  double wall_s = 0;
  std::vector<std::pair<int64_t, double>> loss_curve;  ///< mean loss over each interval, by step
  /// Where a step's time goes, in ms: the mean over one step of every logging interval, timed by
  /// waiting for the device at each phase's end (data, forward, backward, optimizer, ema).
  std::vector<std::pair<std::string, double>> step_ms;
  Weights weights;  ///< final (EMA if on) weights, float32, CPU
  std::string device_name;
  int64_t position_octaves = 0;  ///< of the trained model: the flag's, the starting weights', or the preset's
  double noise_shift = 1;  ///< the shift its noise levels were drawn with: the option's, or the preset's
};

/// The mean loss over the last `steps` steps of a run (all of them, if fewer), from `curve`'s interval
/// means, each by the step that ends it. A single interval's mean is noisy, and the last can be short.
double loss_tail_mean(const std::vector<std::pair<int64_t, double>>& curve, int64_t steps);

/// The probe behind `--direction-contrast`: fresh clips in which an object moves, noised to each
/// level of `sigmas` (the same noise at every level).
struct DirectionProbe {
  int64_t clips = 16, frames = 16, height = 64, width = 64;
  std::vector<double> sigmas{0.95, 0.85, 0.7, 0.5};
  uint64_t seed = 99;
};

/// How much worse MODEL denoises the probe's clips under their time-reversed prompts (left and
/// right swapped, up and down swapped) than under their own: for each noise level, the mean over
/// clips of (reversed-prompt loss - own-prompt loss) / own-prompt loss. Near 0, the model ignores
/// the sign of the direction words.
std::vector<double> reversed_prompt_gap(const Denoiser& model, const DirectionProbe& probe);

/// The flow-matching loss of one batch, and the objective it trains on. MODEL predicts TARGET from the
/// noised clips XT at noise levels SIGMA under PROMPTS; `loss` is the mean squared error. With the
/// direction contrast (`weight` > 0 and some `contrast_rows`), each listed row is denoised again under
/// its time-reversed prompt (`reversed_prompts`, one per row) in the same model call as the batch,
/// and the objective adds weight * mean(relu(margin * own - (reversed - own))) over those rows, own and
/// reversed being the rows' per-clip losses (own taken as a constant in the margin term).
struct Objective {
  at::Tensor loss, objective;
};
Objective training_objective(const Denoiser& model, const at::Tensor& xt, const at::Tensor& sigma,
                             const at::Tensor& target, const std::vector<std::string>& prompts,
                             const std::vector<int64_t>& contrast_rows,
                             const std::vector<std::string>& reversed_prompts, double weight, double margin);

/// Trains `options.model` and returns its weights. Calls `on_progress` every `log_every` steps.
TrainResult train(const TrainOptions& options, const std::function<void(const TrainProgress&)>& on_progress,
                  int64_t log_every = 20);

}  // namespace astraea
