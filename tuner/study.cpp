#include "tuner/study.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <future>
#include <map>
#include <thread>

namespace astraea::tuner {
namespace {

std::string host_name() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return host;
}

std::string genome_key(const Genome& g) { return nlohmann::json(g).dump(); }

// One evaluation, timed: (fitness, wall seconds).
std::pair<double, double> timed(const Objective& objective, const Genome& genome, size_t device) {
  const auto t0 = std::chrono::steady_clock::now();
  const double fitness = objective(genome, device);
  return {fitness, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

}  // namespace

bool ProcessLiveness::gone(const std::string& worker) const {
  const auto at = worker.rfind('@'), colon = worker.rfind(':');
  if (at == std::string::npos || colon == std::string::npos || colon < at) return false;
  if (worker.substr(at + 1, colon - at - 1) != host_name()) return false;
  char* end = nullptr;
  const long long pid = std::strtoll(worker.c_str() + colon + 1, &end, 10);
  if (end == worker.c_str() + colon + 1 || *end != '\0' || pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

std::string this_worker(const std::string& card) {
  return card + "@" + host_name() + ":" + std::to_string(::getpid());
}

Study Study::open(db::Store& store, const std::string& name, const nlohmann::json& config,
                  const std::vector<std::string>& resume_keys) {
  const int64_t id = store.create_or_get_study(name, config.dump());
  const auto stored = nlohmann::json::parse(store.study_config(id));
  for (const auto& key : resume_keys) {
    if (stored.contains(key) && config.contains(key) && stored.at(key) != config.at(key)) {
      throw StudyMismatch(key, stored.at(key).dump(), config.at(key).dump());
    }
  }
  return Study(store, id, name);
}

int64_t Study::trial_id(const Genome& genome) const {
  const auto it = state_->trial_ids.find(genome_key(genome));
  if (it == state_->trial_ids.end())
    throw std::out_of_range("study " + name_ + ": genome " + genome_key(genome) + " was not claimed here");
  return it->second;
}

double Study::evaluation_seconds() const {
  double s = 0;
  for (const auto& t : store_->trials(id_)) s += t.wall_s.value_or(0);
  return s;
}

Evaluate Study::evaluator(Objective objective, const LatencyModel& latency, StudyWorker worker) {
  static const ProcessLiveness processes;
  if (worker.devices == 0) throw std::invalid_argument("a study needs at least one device");
  const WorkerLiveness& liveness = worker.liveness ? *worker.liveness : processes;
  db::Store& store = *store_;
  const int64_t study = id_;
  auto state = state_;
  return [&store, &liveness, study, state, objective = std::move(objective), latency,
          worker](const std::vector<Genome>& genomes) {
    std::vector<double> out(genomes.size());
    auto finish = [&](size_t i, int64_t trial, const std::pair<double, double>& result) {
      store.complete_trial(trial, result.first, latency.cost_ms(genomes[i]), result.second, worker.card);
      out[i] = result.first;
      ++state->counts.evaluated_here;
    };
    std::vector<std::pair<size_t, int64_t>> mine, theirs;  // (index, trial)
    for (size_t i = 0; i < genomes.size(); ++i) {
      const auto claim = store.claim_trial(study, genome_key(genomes[i]), worker.name);
      state->trial_ids[claim.trial.genome_json] = claim.trial.id;
      if (claim.trial.state == db::TrialState::kComplete && claim.trial.fitness) {
        out[i] = *claim.trial.fitness;
        ++state->counts.answered_by_store;
      } else if (claim.claimed) {
        mine.emplace_back(i, claim.trial.id);
      } else if (liveness.gone(claim.trial.claimed_by)) {
        mine.emplace_back(i, claim.trial.id);
        ++state->counts.taken_over;
      } else {
        theirs.emplace_back(i, claim.trial.id);
      }
    }
    // One evaluation at a time per device: chunks of as many genomes as there are devices.
    for (size_t chunk = 0; chunk < mine.size(); chunk += worker.devices) {
      const size_t end = std::min(mine.size(), chunk + worker.devices);
      std::vector<std::future<std::pair<double, double>>> running;
      for (size_t k = chunk; k < end; ++k) {
        running.push_back(std::async(std::launch::async,
                                     [&, k] { return timed(objective, genomes[mine[k].first], k - chunk); }));
      }
      for (size_t k = chunk; k < end; ++k) finish(mine[k].first, mine[k].second, running[k - chunk].get());
    }
    for (const auto& [i, trial] : theirs) {  // another live worker has it: wait for its result
      for (;;) {
        const auto t = store.read_trial(trial);
        if (t.state == db::TrialState::kComplete && t.fitness) {
          out[i] = *t.fitness;
          ++state->counts.answered_by_store;
          break;
        }
        if (t.state == db::TrialState::kFailed) {
          throw std::runtime_error("trial " + std::to_string(t.number) + " of the study failed in worker " +
                                   t.claimed_by);
        }
        if (liveness.gone(t.claimed_by)) {  // it died after claiming: evaluate the genome here
          ++state->counts.taken_over;
          finish(i, trial, timed(objective, genomes[i], 0));
          break;
        }
        std::this_thread::sleep_for(worker.poll);
      }
    }
    return out;
  };
}

std::optional<LatencyFit> stored_latency(const db::Store& store, const std::string& model, int64_t frames,
                                         int64_t height, int64_t width, const std::string& device,
                                         int64_t world_size) {
  const auto rows = store.latency_rows(model, frames, height, width, device, world_size);
  if (rows.empty()) return std::nullopt;
  std::map<double, LatencyPoint> points;
  double dense_ms = 0;
  bool marked_inverted = false;
  for (const auto& r : rows) {
    points[r.budget] = {r.step_ms, r.noise};
    if (r.dense_step_ms > 0) dense_ms = r.dense_step_ms;
    marked_inverted = marked_inverted || r.inverted;
  }
  if (dense_ms <= 0) {  // profiles stored before the dense step was: the measured budget 1, or the line's end
    dense_ms =
        points.count(1.0) ? points.at(1.0).step_ms : points.rbegin()->second.step_ms / points.rbegin()->first;
  }
  auto fit = fit_latency(points, dense_ms);
  if (!fit.work_proportional && marked_inverted) {
    fit = {LatencyModel::work_proportional(dense_ms), true, "the profile marked budgets inverted"};
  }
  return fit;
}

db::Trial pick_trial(const db::Store& store, int64_t study_id, int64_t number) {
  std::optional<db::Trial> pick;
  for (const auto& t : store.trials(study_id)) {
    if (t.state != db::TrialState::kComplete) continue;
    // Trials come in claim order, so among equals the earlier one stays.
    if (number >= 0
            ? t.number == number
            : (!pick ||
               ranks_above(t.fitness.value_or(-INFINITY), t.predicted_cost.value_or(INFINITY),
                           pick->fitness.value_or(-INFINITY), pick->predicted_cost.value_or(INFINITY)))) {
      pick = t;
    }
  }
  if (!pick) {
    throw std::invalid_argument(number >= 0 ? "trial " + std::to_string(number) + " is not a complete trial"
                                            : "the study has no complete trial");
  }
  return *pick;
}

}  // namespace astraea::tuner
