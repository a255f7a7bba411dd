// astraea-bench tune: searches per-step token budgets for a model under a performance target.
// Latency comes from the stored latency model (astraea-bench profile), quality from running the
// real engine on calibration prompts and scoring against dense references. Every trial lives in
// the store: a study resumes after Ctrl-C or kill -9, and a genome is never evaluated twice.
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <future>
#include <random>
#include <thread>

#include "apps/commands.h"
#include "apps/progress.h"
#include "apps/provenance.h"
#include "apps/scoring.h"
#include "core/generate.h"
#include "core/schedule.h"
#include "core/shapes_world.h"
#include "db/store.h"
#include "profiler/timing.h"
#include "tuner/search.h"

namespace astraea::app {
namespace {

struct TuneFlags {
  std::string study, model = "tiny", weights, prompts_file, seeds = "0", fitness = "psnr", algorithm = "ea",
              latency_model, db = "astraea.db", export_path;
  std::vector<std::string> prompts, validation_prompts;
  std::string devices = "cpu";
  int validation_count = 4;
  int64_t frames = 0, height = 0, width = 0, steps = 0, dense_steps = 2;
  double target_speedup = 0, target_latency_ms = 0, target_compute = 0, grid = 0.1, min_budget = 0;
  int population = 8, generations = 5;
  uint64_t seed = 0;
};

// The newest profiled step time at each budget for (model, size, device); empty if none.
std::map<double, double> stored_latency(const db::Store& store, const std::string& model, const VideoShape& shape,
                                        const std::string& device) {
  const auto rows = store.query(
      "SELECT json_extract(r.config_json, '$.budget'), m.value FROM runs r JOIN measurements m ON m.run_id = r.id "
      "AND m.name = 'step_ms' WHERE r.kind = 'profile' AND json_extract(r.config_json, '$.model') = " + db::sql_quote(model) +
      " AND json_extract(r.config_json, '$.frames') = " + std::to_string(shape.frames) +
      " AND json_extract(r.config_json, '$.height') = " + std::to_string(shape.height) +
      " AND json_extract(r.config_json, '$.width') = " + std::to_string(shape.width) +
      (device.empty() ? std::string() : " AND r.device = " + db::sql_quote(device)) + " ORDER BY r.id");
  std::map<double, double> points;
  for (const auto& row : rows.rows) points[std::stod(*row[0])] = std::stod(*row[1]);  // newest wins
  return points;
}

// Writes trial TRIAL of STUDY as a schedule file (docs/schedule.md) with its provenance, and
// records the export in the store.
void export_trial(db::Store& store, int64_t study, const std::string& study_name, const std::string& model,
                  const db::Trial& trial, const std::string& path, std::map<std::string, std::string> provenance) {
  if (trial.state != db::TrialState::kComplete) throw UsageError("trial " + std::to_string(trial.number) + " is not complete");
  TokenBudgetSchedule schedule;
  schedule.model = model;
  schedule.budgets = nlohmann::json::parse(trial.genome_json).get<std::vector<double>>();
  provenance["study"] = study_name;
  provenance["trial"] = std::to_string(trial.number);
  provenance["fitness"] = std::to_string(trial.fitness.value_or(0));
  provenance["predicted_ms"] = std::to_string(trial.predicted_cost.value_or(0));
  provenance["card"] = trial.device;
  provenance["git_revision"] = git_revision();
  schedule.provenance = std::move(provenance);
  store.add_exported_schedule(study, trial.id, path, write_schedule(path, schedule));
  std::printf("exported trial %lld of study %s to %s\n", static_cast<long long>(trial.number), study_name.c_str(), path.c_str());
}

void run(const TuneFlags& f) {
  if (f.study.empty()) throw UsageError("--study NAME is required");
  const int targets = (f.target_speedup > 0) + (f.target_latency_ms > 0) + (f.target_compute > 0);
  if (targets != 1) throw UsageError("give exactly one of --target-speedup, --target-latency-ms, --target-compute");
  tuner::Target target;
  if (f.target_speedup > 0) target = {tuner::Target::Kind::kSpeedup, f.target_speedup};
  if (f.target_latency_ms > 0) target = {tuner::Target::Kind::kLatencyMs, f.target_latency_ms};
  if (f.target_compute > 0) {
    if (f.target_compute > 1) throw UsageError("--target-compute is a share of dense compute, in (0, 1]");
    target = {tuner::Target::Kind::kComputeShare, f.target_compute};
  }
  if (f.algorithm != "ea" && f.algorithm != "nsga2") throw UsageError("--algorithm '" + f.algorithm + "' is not ea or nsga2");
  const auto metrics = quality::parse_metric_set(f.fitness, "--fitness");
  if (!f.export_path.empty()) check_output_path("--export", f.export_path, {".json"});
  std::vector<std::string> prompts = f.prompts;
  if (!f.prompts_file.empty()) {
    std::ifstream in(f.prompts_file);
    if (!in) throw UsageError("--calibration-prompts " + f.prompts_file + " cannot be read");
    for (std::string line; std::getline(in, line);)
      if (!line.empty() && line[0] != '#') prompts.push_back(line);
  }
  if (prompts.empty()) throw UsageError("tune needs calibration prompts: --prompt TEXT or --calibration-prompts FILE");
  for (const auto& p : prompts) shapes::parse_prompt(p);  // names a bad word now, not mid-search
  std::vector<uint64_t> seeds;
  for (double s : parse_number_list("--seeds", f.seeds, 0, 9.0e15)) seeds.push_back(static_cast<uint64_t>(s));

  const auto& preset = model_preset(f.model);
  const auto shape = video_shape(preset, f.frames ? f.frames : preset.default_frames,
                                 f.height ? f.height : preset.default_height, f.width ? f.width : preset.default_width);
  tuner::SearchSpace space{f.steps ? f.steps : preset.default_steps, f.dense_steps, f.grid, f.min_budget};
  space.validate();

  const auto devices = split_list(f.devices);
  if (devices.empty()) throw UsageError("--devices is empty");
  for (const auto& d : devices) parse_device(d);  // throws naming a device this machine lacks
  auto store = db::Store::open(f.db);
  const auto env = profiler::environment(parse_device(devices.front()));
  const std::string card = env.value("device", devices.front());
  std::map<double, double> points;
  std::string latency_source;
  if (f.latency_model.empty()) {
    points = stored_latency(store, preset.name, shape, card);
    latency_source = preset.name + "@" + std::to_string(shape.frames) + "x" + std::to_string(shape.height) + "x" +
                     std::to_string(shape.width) + " on " + card;
  } else {
    // PRESET@FxHxW: latency measured on another model and shape (any card, newest first).
    const auto at = f.latency_model.find('@');
    long long lf, lh, lw;
    char tail;
    if (at == std::string::npos ||
        std::sscanf(f.latency_model.c_str() + at + 1, "%lldx%lldx%lld%c", &lf, &lh, &lw, &tail) != 3) {
      throw UsageError("--latency-model '" + f.latency_model + "' is not PRESET@FRAMESxHEIGHTxWIDTH");
    }
    const auto& other = model_preset(f.latency_model.substr(0, at));
    points = stored_latency(store, other.name, video_shape(other, lf, lh, lw), "");
    latency_source = f.latency_model;
  }
  if (points.empty()) {
    throw UsageError("--db " + f.db + " has no latency model for " + latency_source + ": run astraea-bench profile "
                     "with the same model and size first");
  }
  const tuner::LatencyModel latency(points);
  const double dense_ms = latency.dense_ms(space.steps);
  if (target.within(tuner::Genome(static_cast<size_t>(space.steps), 1.0), latency)) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "the target is at or above dense sampling (%.1f ms predicted): nothing to search", dense_ms);
    throw UsageError(msg);
  }

  nlohmann::json config{{"model", preset.name}, {"frames", shape.frames}, {"height", shape.height},
                        {"width", shape.width}, {"steps", space.steps}, {"dense_steps", space.dense_steps},
                        {"grid", space.grid}, {"fitness", f.fitness}, {"prompts", prompts}, {"seeds", seeds},
                        {"latency_model", latency_source}};
  const int64_t study = store.create_or_get_study(f.study, config.dump());
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::string worker = card + "@" + host + ":" + std::to_string(::getpid());
  // A trial claimed by a process of this host that no longer exists (Ctrl-C, kill -9) is taken over.
  auto stale = [&](const std::string& claimed_by) {
    const auto at = claimed_by.rfind('@'), colon = claimed_by.rfind(':');
    if (at == std::string::npos || colon == std::string::npos || colon < at) return false;
    if (claimed_by.substr(at + 1, colon - at - 1) != host) return false;
    const pid_t pid = static_cast<pid_t>(std::stoll(claimed_by.substr(colon + 1)));
    return ::kill(pid, 0) != 0 && errno == ESRCH;
  };

  // Dense references, once per (prompt, seed).
  std::map<std::pair<std::string, uint64_t>, at::Tensor> references;
  auto options_for = [&](const std::string& prompt, uint64_t seed, const std::string& device) {
    GenerateOptions o;
    o.model = preset.name;
    o.weights = f.weights;
    o.prompt = prompt;
    o.frames = shape.frames;
    o.height = shape.height;
    o.width = shape.width;
    o.steps = space.steps;
    o.seed = seed;
    o.device = device;
    return o;
  };
  std::map<std::string, int64_t> trial_ids;  // genome JSON -> trial
  int64_t evaluated_here = 0, answered_by_store = 0;
  // Fills in the dense references of PROMPTS x SEEDS (once; evaluations then only read them).
  auto make_references = [&](const std::vector<std::string>& ps) {
    for (const auto& prompt : ps)
      for (uint64_t seed : seeds) {
        auto& ref = references[{prompt, seed}];
        if (!ref.defined()) ref = generate(options_for(prompt, seed, devices.front())).video;
      }
  };
  make_references(prompts);
  auto fitness_on = [&](const tuner::Genome& genome, const std::vector<std::string>& ps, const std::string& device) {
    double sum = 0;
    for (const auto& prompt : ps) {
      for (uint64_t seed : seeds) {
        const auto& ref = references.at({prompt, seed});
        auto o = options_for(prompt, seed, device);
        TokenBudgetSchedule schedule;
        schedule.model = preset.name;
        schedule.budgets = genome;
        o.schedule = schedule;
        const auto s = score_video(generate(o).video, &ref, prompt, 16.0, metrics);
        // PSNR is capped at 60 dB (identical videos are +inf); "both" averages PSNR / 40 with the total.
        const double psnr = s.fidelity ? std::min(60.0, s.fidelity->psnr) : 0.0;
        sum += metrics.fidelity && metrics.vbench ? 0.5 * (psnr / 40.0 + s.vbench->total)
               : metrics.fidelity                ? psnr
                                                 : s.vbench->total;
      }
    }
    return sum / static_cast<double>(ps.size() * seeds.size());
  };
  // A batch: claim every genome (the store answers those done before), evaluate the claimed ones
  // in parallel, one thread per --devices entry, then wait for those another worker is running.
  tuner::Evaluate evaluate = [&](const std::vector<tuner::Genome>& genomes) {
    std::vector<double> out(genomes.size());
    std::vector<std::pair<size_t, int64_t>> mine, theirs;  // (index, trial)
    for (size_t i = 0; i < genomes.size(); ++i) {
      const auto claim = store.claim_trial(study, nlohmann::json(genomes[i]).dump(), worker);
      trial_ids[claim.trial.genome_json] = claim.trial.id;
      if (claim.trial.state == db::TrialState::kComplete && claim.trial.fitness) {
        out[i] = *claim.trial.fitness;
        ++answered_by_store;
      } else if (claim.claimed || stale(claim.trial.claimed_by)) {
        mine.emplace_back(i, claim.trial.id);
      } else {
        theirs.emplace_back(i, claim.trial.id);
      }
    }
    // One evaluation at a time per device: chunks of as many genomes as there are devices.
    for (size_t chunk = 0; chunk < mine.size(); chunk += devices.size()) {
      std::vector<std::future<std::pair<double, double>>> running;  // (fitness, wall s)
      for (size_t k = chunk; k < std::min(mine.size(), chunk + devices.size()); ++k) {
        running.push_back(std::async(std::launch::async, [&, k] {
          const auto t0 = std::chrono::steady_clock::now();
          const double fit = fitness_on(genomes[mine[k].first], prompts, devices[k - chunk]);
          return std::make_pair(fit, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }));
      }
      for (size_t k = chunk; k < std::min(mine.size(), chunk + devices.size()); ++k) {
        const auto [fit, wall] = running[k - chunk].get();
        store.complete_trial(mine[k].second, fit, latency.cost_ms(genomes[mine[k].first]), wall, card);
        out[mine[k].first] = fit;
        ++evaluated_here;
      }
    }
    for (const auto& [i, trial] : theirs) {  // another live worker has it: wait for its result
      for (;;) {
        std::optional<double> fit;
        const auto t = store.read_trial(trial);
        if (t.state == db::TrialState::kComplete) fit = t.fitness;
        if (fit) {
          out[i] = *fit;
          ++answered_by_store;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
    return out;
  };

  tuner::SearchOptions o;
  o.population = f.population;
  o.generations = f.generations;
  o.seed = f.seed;
  Progress progress("tune", f.generations + 1);
  o.on_generation = [&](int g, int64_t evaluations, const tuner::Evaluated& best, size_t front) {
    char extra[160];
    std::snprintf(extra, sizeof extra, "%lld evaluations, best %.3f at %.1f ms, Pareto %zu", static_cast<long long>(evaluations),
                  best.fitness, best.cost_ms, front);
    progress.update(g + 1, extra);
  };
  const auto result = f.algorithm == "ea" ? tuner::evolve(space, latency, target, evaluate, o)
                                          : tuner::nsga2(space, latency, target, evaluate, o);
  progress.finish();

  const auto& best = result.best;
  double device_s = 0;
  for (const auto& t : store.trials(study)) device_s += t.wall_s.value_or(0);
  std::printf("study %s: %zu genomes, %lld evaluated now, %lld answered by the store; %.1f device-seconds of "
              "evaluation in the study so far\n", f.study.c_str(), result.evaluated.size(),
              static_cast<long long>(evaluated_here), static_cast<long long>(answered_by_store), device_s);
  std::printf("best: fitness %.4f (%s), predicted %.1f ms of %.1f dense (%.2fx)\n", best.fitness, f.fitness.c_str(),
              best.cost_ms, dense_ms, dense_ms / best.cost_ms);
  std::string budgets;
  for (double b : best.genome) budgets += (budgets.empty() ? "" : " ") + std::to_string(b).substr(0, 3);
  std::printf("budgets: %s\n", budgets.c_str());
  std::printf("Pareto front (%zu):\n", result.front.size());
  for (const auto& e : result.front) std::printf("  %8.1f ms  %.2fx  fitness %.4f\n", e.cost_ms, dense_ms / e.cost_ms, e.fitness);

  // The proof: the best schedule on prompts the search never saw, against their own dense videos.
  std::vector<std::string> held_out = f.validation_prompts;
  if (held_out.empty()) {
    std::mt19937_64 rng(0x5eed0fa1);
    while (static_cast<int>(held_out.size()) < f.validation_count) {
      const auto p = shapes::to_text(shapes::random_prompt(rng));
      if (std::find(prompts.begin(), prompts.end(), p) == prompts.end()) held_out.push_back(p);
    }
  }
  if (!held_out.empty()) {
    for (const auto& p : held_out) shapes::parse_prompt(p);
    make_references(held_out);
    const double validation = fitness_on(best.genome, held_out, devices.front());
    std::printf("validation: fitness %.4f on %zu held-out prompts x %zu seeds (calibration %.4f)\n", validation,
                held_out.size(), seeds.size(), best.fitness);
    db::RunRecord run;
    run.kind = "validation";
    run.config_json = nlohmann::json{{"study", f.study}, {"genome", best.genome}, {"prompts", held_out},
                                     {"seeds", seeds}, {"fitness_metric", f.fitness},
                                     {"command", command_line()}}
                          .dump();
    run.git_revision = git_revision();
    run.device = card;
    run.measurements = {{"validation_fitness", "", validation, std::nullopt, std::nullopt, "", "quality"},
                        {"calibration_fitness", "", best.fitness, std::nullopt, std::nullopt, "", "quality"},
                        {"predicted_ms", "ms", best.cost_ms, std::nullopt, std::nullopt, "", "latency model"}};
    store.add_run(run);
  }

  if (!f.export_path.empty()) {
    const auto trial = store.read_trial(trial_ids.at(nlohmann::json(best.genome).dump()));
    export_trial(store, study, f.study, preset.name, trial, f.export_path,
                 {{"fitness_metric", f.fitness}, {"latency_model", latency_source}});
  }
}

}  // namespace

struct ExportFlags {
  std::string study, db = "astraea.db", out;
  int64_t trial = -1;
};

void run_export(const ExportFlags& f) {
  check_output_path("--out", f.out, {".json"});
  require_existing_db(f.db);
  auto store = db::Store::open(f.db);
  const auto rows = store.query("SELECT id, config_json FROM studies WHERE name = " + db::sql_quote(f.study));
  if (rows.rows.empty()) throw UsageError("--study " + f.study + " is not in " + f.db);
  const int64_t study = std::stoll(*rows.rows[0][0]);
  const auto config = nlohmann::json::parse(rows.rows[0][1].value_or("{}"));
  std::optional<db::Trial> pick;
  for (const auto& t : store.trials(study)) {
    if (t.state != db::TrialState::kComplete) continue;
    if (f.trial >= 0 ? t.number == f.trial : (!pick || t.fitness > pick->fitness)) pick = t;
  }
  if (!pick) {
    throw UsageError(f.trial >= 0 ? "--trial " + std::to_string(f.trial) + " is not a complete trial of " + f.study
                                  : "study " + f.study + " has no complete trial");
  }
  export_trial(store, study, f.study, config.value("model", std::string("tiny")), *pick, f.out,
               {{"fitness_metric", config.value("fitness", std::string())},
                {"latency_model", config.value("latency_model", std::string())}});
}

void register_tune(CLI::App& app) {
  auto e = std::make_shared<ExportFlags>();
  auto* ex = app.add_subcommand("export", "Write a study's trial (default: the best) as a schedule file for generate --schedule");
  ex->add_option("--study", e->study, "the study")->required();
  ex->add_option("--trial", e->trial, "the trial number (default: the highest fitness)");
  ex->add_option("--out", e->out, "the schedule, .json")->required();
  ex->add_option("--db", e->db, "the store")->default_val("astraea.db");
  on_run(ex, [e] { run_export(*e); });

  auto f = std::make_shared<TuneFlags>();
  auto* sub = app.add_subcommand("tune", "Search per-step token budgets under a performance target");
  sub->add_option("--study", f->study, "the study's name in the store (resumes it if it exists)")->required();
  sub->add_option("--model", f->model, "model preset")->default_val("tiny");
  sub->add_option("--weights", f->weights, "safetensors file or 'random' (default: the preset's shipped weights)");
  sub->add_option("--frames", f->frames, "video frames (default: the preset's)");
  sub->add_option("--height", f->height, "video height in pixels");
  sub->add_option("--width", f->width, "video width in pixels");
  sub->add_option("--steps", f->steps, "sampling steps (default: the preset's)");
  sub->add_option("--dense-steps", f->dense_steps, "first steps forced dense")->default_val(2);
  sub->add_option("--grid", f->grid, "budget grid")->default_val(0.1);
  sub->add_option("--min-budget", f->min_budget, "lowest budget a step may take (0 allows skipping steps)")->default_val(0.0);
  sub->add_option("--target-speedup", f->target_speedup, "predicted speedup over dense to meet");
  sub->add_option("--target-latency-ms", f->target_latency_ms, "predicted latency to meet, ms");
  sub->add_option("--target-compute", f->target_compute, "share of dense compute (mean budget) to meet");
  sub->add_option("--algorithm", f->algorithm, "ea (the paper's) or nsga2")->default_val("ea");
  sub->add_option("--population", f->population, "population size")->default_val(8)->check(CLI::Range(2, 1000));
  sub->add_option("--generations", f->generations, "generations")->default_val(5)->check(CLI::Range(0, 10000));
  sub->add_option("--prompt", f->prompts, "calibration prompt (repeatable)");
  sub->add_option("--calibration-prompts", f->prompts_file, "calibration prompts, one per line");
  sub->add_option("--seeds", f->seeds, "calibration seeds, comma-separated")->default_val("0");
  sub->add_option("--fitness", f->fitness, "psnr, vbench-proxy or both")->default_val("psnr");
  sub->add_option("--latency-model", f->latency_model, "take latency from another profiled PRESET@FxHxW");
  sub->add_option("--devices", f->devices, "where trials run: cpu, or cuda:0,cuda:1,... (one evaluation at a time on each)")
      ->default_val("cpu");
  sub->add_option("--validation-prompt", f->validation_prompts, "held-out prompt for the final check (repeatable)");
  sub->add_option("--validation-count", f->validation_count,
                  "without --validation-prompt: this many fresh prompts from the grammar (0: no check)")
      ->default_val(4);
  sub->add_option("--seed", f->seed, "search seed")->default_val(0);
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  sub->add_option("--export", f->export_path, "write the best schedule here (docs/schedule.md)");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
