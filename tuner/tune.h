// One tuning run from start to end, as a library call: resolve the latency model, open or resume
// the study, search, check the best schedule on held-out prompts against the uniform schedule of
// equal cost, time it against dense, and record the check in the store. The command line only
// parses flags into a TuneRequest and prints the TuneOutcome.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "db/store.h"
#include "tuner/evaluation.h"
#include "tuner/search.h"
#include "tuner/study.h"

namespace astraea::tuner {

/// The store has no latency model for what the request names.
class NoLatencyModel : public std::runtime_error {
 public:
  explicit NoLatencyModel(const std::string& source)
      : std::runtime_error("no latency model for " + source), source(source) {}
  std::string source;
};

struct TuneRequest {
  std::string study;
  RunnerSetup videos;  ///< what calibration and held-out evaluation generate (its seeds, its devices)
  SearchSpace space;   ///< space.steps is videos.steps
  Target target;
  std::string algorithm = "ea";  ///< "ea" or "nsga2"
  SearchOptions search;
  quality::MetricList metrics{&quality::metric("psnr")};
  std::string fitness_name = "psnr";
  std::vector<std::string> prompts;   ///< calibration
  std::vector<std::string> held_out;  ///< empty: no held-out check
  /// Latency measured on another preset and size (any card), and timed there with random weights;
  /// empty model: the request's own preset, size and card.
  std::string latency_model;
  int64_t latency_frames = 0, latency_height = 0, latency_width = 0;
  /// Tune for a deployment on this many ranks: the latency of a profile on as many (profile under
  /// launch), and quality from schedules that select per rank shard (videos.segments).
  int64_t latency_world_size = 1;
  /// The mixed genome (SearchSpace::step_cache): a reusing step costs this share of a dense step
  /// (a step-cost table's stand-in over dense); < 0: budgets only.
  double reuse_share = -1;
  /// A step's time at each budget from a step-cost table (tune --step-costs): when not empty, the
  /// latency model is the line through these points, named STEP_COST_SOURCE, and no profile is read.
  std::map<double, double> step_cost_ms;
  std::string step_cost_source;
  int measure_repeats = 2;                                 ///< 0: predicted latency only
  std::string save_videos;                                 ///< where the held-out videos go ("" none)
  std::string card;                                        ///< the first device's name, as profile stored it
  std::string weights_digest, git_revision, command_line;  ///< provenance
};

struct TuneOutcome {
  LatencyFit latency;
  std::string latency_source;  ///< "PRESET@FxHxW on CARD" or the request's latency_model spelling
  double dense_ms = 0;         ///< predicted dense sampling
  SearchResult search;
  StudyCounts counts;
  double evaluation_seconds = 0;  ///< stored for the whole study, every worker's
  int64_t study_id = 0, best_trial_id = 0;
  Genome uniform;  ///< the equal-cost uniform schedule
  std::optional<HeldOutCheck> held_out;
  std::optional<MeasuredSpeed> speed;
  std::string measured_on;  ///< PRESET@FxHxW of the timed runs
};

struct TuneCallbacks {
  /// The latency model fell back to the work-proportional one (before any work).
  std::function<void(const std::string& source, const LatencyFit& fit)> on_fallback;
  /// After each generation, as SearchOptions::on_generation.
  std::function<void(int, int64_t, const Evaluated&, size_t)> on_generation;
  /// Before a long phase ("held-out", "measure").
  std::function<void(const std::string& phase)> on_phase;
};

/// Runs REQUEST against STORE. Throws NoLatencyModel, StudyMismatch, std::invalid_argument for a
/// target at or above dense sampling, and what the engine throws.
TuneOutcome tune(db::Store& store, const TuneRequest& request, const TuneCallbacks& callbacks = {});

}  // namespace astraea::tuner
