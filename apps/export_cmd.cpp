// astraea-bench export: a study's trial (default: the best) as a schedule file, and the export
// that `tune --export` shares.
#include <cstdio>

#include "apps/commands.h"
#include "apps/provenance.h"
#include "db/store.h"
#include "engine/schedule.h"
#include "tuner/study.h"

namespace astraea::app {

void export_trial(db::Store& store, int64_t study_id, const std::string& study, const std::string& model,
                  const db::Trial& trial, const std::string& path,
                  std::map<std::string, std::string> provenance, int64_t segments) {
  if (trial.state != db::TrialState::kComplete)
    throw UsageError("trial " + std::to_string(trial.number) + " is not complete");
  TokenBudgetSchedule schedule;
  schedule.model = model;
  schedule.budgets = nlohmann::json::parse(trial.genome_json).get<std::vector<double>>();
  schedule.selection.segments = segments;
  provenance["study"] = study;
  provenance["trial"] = std::to_string(trial.number);
  provenance["fitness"] = std::to_string(trial.fitness.value_or(0));
  provenance["predicted_ms"] = std::to_string(trial.predicted_cost.value_or(0));
  provenance["card"] = trial.device;
  provenance["git_revision"] = git_revision();
  schedule.provenance = std::move(provenance);
  store.add_exported_schedule(study_id, trial.id, path, write_schedule(path, schedule));
  std::printf("exported trial %lld of study %s to %s\n", static_cast<long long>(trial.number), study.c_str(),
              path.c_str());
}

namespace {

struct ExportFlags {
  std::string study, db = "astraea.db", out;
  int64_t trial = -1;
};

void run(const ExportFlags& f) {
  check_output_path("--out", f.out, {".json"});
  require_existing_db(f.db);
  auto store = db::Store::open(f.db);
  const auto id = store.find_study(f.study);
  if (!id) throw UsageError("--study " + f.study + " is not in " + f.db);
  const auto config = nlohmann::json::parse(store.study_config(*id));
  db::Trial pick;
  try {
    pick = tuner::pick_trial(store, *id, f.trial);
  } catch (const std::invalid_argument& e) {
    throw UsageError(f.trial >= 0
                         ? "--trial " + std::to_string(f.trial) + " is not a complete trial of " + f.study
                         : "study " + f.study + " has no complete trial");
  }
  export_trial(store, *id, f.study, config.value("model", std::string("tiny")), pick, f.out,
               {{"fitness_metric", config.value("fitness", std::string())},
                {"latency_model", config.value("latency_model", std::string())}},
               config.value("world_size", int64_t{1}));
}

}  // namespace

void register_export(CLI::App& app) {
  auto f = std::make_shared<ExportFlags>();
  auto* sub = app.add_subcommand(
      "export", "Write a study's trial (default: the best) as a schedule file for generate --schedule");
  sub->add_option("--study", f->study, "the study")->required();
  sub->add_option("--trial", f->trial, "the trial number (default: the highest fitness)");
  sub->add_option("--out", f->out, "the schedule, .json")->required();
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
