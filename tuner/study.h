// A tuning study kept in the store, after Optuna's study loop (optuna/study/_optimize.py): the
// searches ask for fitnesses in batches, and the study claims each genome in the store (a genome
// is never evaluated twice, across processes and restarts), evaluates the claimed ones on its
// devices in parallel, waits for those another worker is running, and takes over the trials of a
// worker that died. Evaluation itself is the caller's (an Objective), so the loop is tested with
// fake objectives and fake workers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "db/store.h"
#include "tuner/search.h"

namespace astraea::tuner {

/// A study exists with another value of a key its trials' fitness depends on.
class StudyMismatch : public std::runtime_error {
 public:
  StudyMismatch(const std::string& key, const std::string& stored, const std::string& now)
      : std::runtime_error("study exists with another " + key + " (" + stored + ", now " + now + ")"),
        key(key),
        stored(stored),
        now(now) {}
  std::string key, stored, now;  ///< the key, and its stored and requested values as JSON
};

/// Says whether the worker that claimed a trial is gone, so that its trial may be taken over.
class WorkerLiveness {
 public:
  virtual ~WorkerLiveness() = default;
  virtual bool gone(const std::string& worker) const = 0;
};

/// Workers named "CARD@HOST:PID" (this_worker()): gone when HOST is this machine and no process
/// PID exists any more (Ctrl-C, kill -9). A worker of another host is never judged gone.
class ProcessLiveness : public WorkerLiveness {
 public:
  bool gone(const std::string& worker) const override;
};

/// This process's worker name for CARD: "CARD@HOST:PID".
std::string this_worker(const std::string& card);

/// The fitness of GENOME (higher is better), computed on device DEVICE (0 <= DEVICE < the
/// study's device count). Called from one thread per device at once.
using Objective = std::function<double(const Genome& genome, size_t device)>;

/// Where one batch's answers came from, over the study's life in this process.
struct StudyCounts {
  int64_t evaluated_here = 0;     ///< evaluated by this process (its own claims and takeovers)
  int64_t answered_by_store = 0;  ///< complete before, or completed by another worker
  int64_t taken_over = 0;         ///< claimed by a worker that was gone, evaluated here
};

/// How a study evaluates: its devices, this worker, and how it judges and waits for others.
struct StudyWorker {
  size_t devices = 1;                        ///< evaluations at once, one per device
  std::string name;                          ///< this worker, as claims record it (this_worker())
  std::string card;                          ///< stored with each completed trial
  const WorkerLiveness* liveness = nullptr;  ///< nullptr: ProcessLiveness
  std::chrono::milliseconds poll{500};       ///< how often to look at a trial another worker runs
};

class Study {
 public:
  /// Opens study NAME in STORE, creating it with CONFIG if it is new. A study resumes only where
  /// its trials still hold: each of RESUME_KEYS present in the stored configuration must equal
  /// CONFIG's, else StudyMismatch names the key.
  static Study open(db::Store& store, const std::string& name, const nlohmann::json& config,
                    const std::vector<std::string>& resume_keys);

  int64_t id() const { return id_; }
  const std::string& name() const { return name_; }

  /// The batch evaluation the searches call (tuner::Evaluate). For each genome: the store's
  /// answer if it is complete; else OBJECTIVE here if this worker claimed it or its worker is
  /// gone; else wait for the live worker that holds it, taking it over should that worker go.
  /// Each completed trial stores its fitness, LATENCY's predicted cost, wall time and card.
  Evaluate evaluator(Objective objective, const LatencyModel& latency, StudyWorker worker);

  const StudyCounts& counts() const { return state_->counts; }
  /// The trial of GENOME, once a batch of this process has claimed or read it.
  int64_t trial_id(const Genome& genome) const;
  /// Seconds of evaluation stored for all the study's trials (every worker's).
  double evaluation_seconds() const;

 private:
  struct State {
    StudyCounts counts;
    std::map<std::string, int64_t> trial_ids;  // canonical genome JSON -> trial
  };
  Study(db::Store& store, int64_t id, std::string name)
      : store_(&store), id_(id), name_(std::move(name)), state_(std::make_shared<State>()) {}

  db::Store* store_;
  int64_t id_;
  std::string name_;
  std::shared_ptr<State> state_;  // shared with the evaluators, which outlive no study
};

/// The latency model of MODEL at FRAMES x HEIGHT x WIDTH on DEVICE ("": any card) and WORLD_SIZE
/// ranks that STORE holds, through fit_latency (a row that `profile` marked inverted also makes
/// the fallback); nullopt when nothing was profiled.
std::optional<LatencyFit> stored_latency(const db::Store& store, const std::string& model, int64_t frames,
                                         int64_t height, int64_t width, const std::string& device,
                                         int64_t world_size = 1);

/// The trial to export from STUDY_ID: number NUMBER (>= 0), else the best complete one by
/// ranks_above. std::invalid_argument when there is none.
db::Trial pick_trial(const db::Store& store, int64_t study_id, int64_t number = -1);

}  // namespace astraea::tuner
