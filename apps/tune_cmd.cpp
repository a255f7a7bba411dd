// astraea-bench tune: parses flags into a tuner::TuneRequest, runs it (tuner/tune.h: the study,
// the search, the held-out check and the measured speed), prints the outcome, and exports the
// best schedule.
#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "apps/commands.h"
#include "apps/progress.h"
#include "apps/provenance.h"
#include "apps/tune_output.h"
#include "engine/generate.h"
#include "engine/methods.h"
#include "engine/step_costs.h"
#include "profiler/timing.h"
#include "shapes/shapes_world.h"
#include "tuner/latency_model.h"
#include "tuner/tune.h"

namespace astraea::app {
namespace {

struct TuneFlags {
  std::string study, model = "tiny", weights, prompts_file, seeds = "0", fitness = "psnr", algorithm = "ea",
                     method = "astraea", latency_model, db = "astraea.db", export_path, devices = "cpu",
                     save_videos;
  std::vector<std::string> prompts, validation_prompts;
  int validation_count = 4, measure_repeats = 2, population = 8, generations = 5;
  int64_t frames = 0, height = 0, width = 0, steps = 0, dense_steps = 2;
  double target_speedup = 0, target_latency_ms = 0, target_compute = 0, grid = 0.1, min_budget = 0;
  std::string genome = "budgets", step_costs;
  uint64_t seed = 0;
};

tuner::Target parse_target(const TuneFlags& f) {
  if ((f.target_speedup > 0) + (f.target_latency_ms > 0) + (f.target_compute > 0) != 1)
    throw UsageError("give exactly one of --target-speedup, --target-latency-ms, --target-compute");
  if (f.target_speedup > 0) return {tuner::Target::Kind::kSpeedup, f.target_speedup};
  if (f.target_latency_ms > 0) return {tuner::Target::Kind::kLatencyMs, f.target_latency_ms};
  if (f.target_compute > 1) throw UsageError("--target-compute is a share of dense compute, in (0, 1]");
  return {tuner::Target::Kind::kComputeShare, f.target_compute};
}

// --prompt and --calibration-prompts, then --validation-prompt or --validation-count fresh prompts
// of the shapes world's grammar that are not calibration prompts.
void read_prompts(const TuneFlags& f, tuner::TuneRequest& r) {
  r.prompts = f.prompts;
  if (!f.prompts_file.empty()) {
    std::ifstream in(f.prompts_file);
    if (!in) throw UsageError("--calibration-prompts " + f.prompts_file + " cannot be read");
    for (std::string line; std::getline(in, line);)
      if (!line.empty() && line[0] != '#') r.prompts.push_back(line);
  }
  if (r.prompts.empty())
    throw UsageError("tune needs calibration prompts: --prompt TEXT or --calibration-prompts FILE");
  r.held_out = f.validation_prompts.empty() ? shapes::fresh_prompts(f.validation_count, r.prompts, 0x5eed0fa1)
                                            : f.validation_prompts;
  for (const auto* set : {&r.prompts, &r.held_out})
    for (const auto& p : *set) shapes::parse_prompt(p);  // names a bad word now, not mid-search
}

tuner::TuneRequest request_of(const TuneFlags& f) {
  tuner::TuneRequest r;
  r.study = f.study;
  r.target = parse_target(f);
  if (f.algorithm != "ea" && f.algorithm != "nsga2")
    throw UsageError("--algorithm '" + f.algorithm + "' is not ea or nsga2");
  r.algorithm = f.algorithm;
  try {
    engine::method_info(f.method);
  } catch (const std::invalid_argument& e) {
    throw UsageError("--method " + std::string(e.what()));
  }
  if (f.method != "astraea")
    throw UsageError("--method " + f.method +
                     ": tune searches per-step token budgets, which only astraea takes");
  r.metrics = quality::parse_metrics(f.fitness, "fitness");
  r.fitness_name = f.fitness;
  if (!f.export_path.empty()) check_output_path("--export", f.export_path, {".json"});
  read_prompts(f, r);
  const auto& preset = model_preset(f.model);
  const auto shape = video_shape(preset, f.frames ? f.frames : preset.default_frames,
                                 f.height ? f.height : preset.default_height, f.width ? f.width : preset.default_width);
  r.space = {f.steps ? f.steps : preset.default_steps, f.dense_steps, f.grid, f.min_budget};
  if (f.genome != "budgets" && f.genome != "mixed")
    throw UsageError("--genome '" + f.genome + "' is not budgets or mixed");
  if (f.genome == "mixed" && f.step_costs.empty())
    throw UsageError(
        "--genome mixed needs --step-costs FILE (astraea-bench step-costs): what a reusing step costs");
  if (!f.step_costs.empty()) {  // one cost model for the search and the report's pricing
    try {
      const auto costs = engine::StepCosts::read(f.step_costs);
      const double calls = preset.default_guidance != 1.0 ? 2.0 : 1.0;  // a guided step: two calls
      for (const auto& [budget, ms] : costs.budget_ms()) r.step_cost_ms[budget] = calls * ms;
      r.step_cost_source = "step costs " + f.step_costs + " (" + costs.model + ", " +
                           std::to_string(costs.tokens) + " tokens, " + costs.device + ")";
      if (f.genome == "mixed") r.reuse_share = costs.stand_in_ms / costs.dense_ms;
    } catch (const std::invalid_argument& e) {  // names the file and field
      throw UsageError("--step-costs " + std::string(e.what()));
    }
    try {
      tuner::LatencyModel check(r.step_cost_ms);  // a table whose line does not grow fails here, named
    } catch (const std::invalid_argument& e) {
      throw UsageError("--step-costs " + f.step_costs + ": " + e.what());
    }
    r.space.step_cache = f.genome == "mixed";
  }
  r.space.validate();
  r.videos = {preset.name, f.weights,     shape.frames, shape.height,
              shape.width, r.space.steps, {},           split_list(f.devices)};
  for (double s : parse_number_list("--seeds", f.seeds, 0, 9.0e15))
    r.videos.seeds.push_back(static_cast<uint64_t>(s));
  if (r.videos.devices.empty()) throw UsageError("--devices is empty");
  for (const auto& d : r.videos.devices) parse_device(d);  // throws naming a device this machine lacks
  if (!f.latency_model.empty()) {                          // PRESET@FxHxW[@RANKS]
    const auto at = f.latency_model.find('@'), ranks = f.latency_model.find('@', at + 1);
    if (at == std::string::npos)
      throw UsageError("--latency-model '" + f.latency_model + "' is not PRESET@FRAMESxHEIGHTxWIDTH[@RANKS]");
    const auto size =
        parse_video_size(f.latency_model.substr(at + 1, ranks - at - 1), "--latency-model size");
    r.latency_model = model_preset(f.latency_model.substr(0, at)).name;
    r.latency_frames = size.frames, r.latency_height = size.height, r.latency_width = size.width;
    if (ranks != std::string::npos) {
      const std::string n = f.latency_model.substr(ranks + 1);
      char* end = nullptr;
      r.latency_world_size = std::strtol(n.c_str(), &end, 10);
      if (n.empty() || *end || r.latency_world_size < 1 || r.latency_world_size > 4096)
        throw UsageError("--latency-model ranks '" + n + "' is not a count in [1, 4096]");
      r.videos.segments = r.latency_world_size;
    }
  }
  r.search = {f.population, f.generations, 0.3, 0.5, f.seed, {}};
  r.measure_repeats = f.measure_repeats;
  r.save_videos = f.save_videos;
  const auto device = r.videos.devices.front();
  r.card = profiler::environment(parse_device(device)).value("device", device);
  r.weights_digest = weights_digest(preset.name, f.weights);
  r.git_revision = git_revision();
  r.command_line = command_line();
  return r;
}

void run(const TuneFlags& f) {
  const auto request = request_of(f);
  auto store = db::Store::open(f.db);
  Progress progress("tune", f.generations + 1);
  tuner::TuneCallbacks callbacks;
  callbacks.on_fallback = [](const std::string& source, const tuner::LatencyFit& fit) {
    std::fprintf(
        stderr,
        "warning: latency model %s: %s; using the work-proportional model instead (dense step %.1f ms x "
        "budget); re-profile on a quiet machine for a measured one\n",
        source.c_str(), fit.why.c_str(), fit.model.step_ms(1.0));
  };
  callbacks.on_generation = [&](int g, int64_t evaluations, const tuner::Evaluated& best, size_t front) {
    char extra[160];
    std::snprintf(extra, sizeof extra, "%lld evaluations, best %.3f at %.1f ms, Pareto %zu",
                  static_cast<long long>(evaluations), best.fitness, best.cost_ms, front);
    progress.update(g + 1, extra);
    if (g == f.generations) progress.finish();
  };
  callbacks.on_phase = [&](const std::string& phase) {
    if (phase == "measure")
      std::printf(
          "measuring %s, %lld steps: dense, tuned and uniform, %d runs each, interleaved\n",
          request.latency_model.empty() ? request.videos.model.c_str() : request.latency_model.c_str(),
          static_cast<long long>(request.space.steps), request.measure_repeats);
  };
  tuner::TuneOutcome out;
  try {
    out = tuner::tune(store, request, callbacks);
  } catch (const tuner::NoLatencyModel& e) {
    throw UsageError("--db " + f.db + " has no latency model for " + e.source +
                     ": run astraea-bench profile with the same model and size first");
  } catch (const tuner::StudyMismatch& e) {
    throw UsageError("--study " + f.study + " exists in " + f.db + " with another " + e.key + " (" +
                     e.stored + ", now " + e.now + "); choose another --study name");
  }
  print_outcome(request, out);
  if (!f.export_path.empty())
    export_trial(store, out.study_id, f.study, request.videos.model, store.read_trial(out.best_trial_id),
                 f.export_path, {{"fitness_metric", f.fitness}, {"latency_model", out.latency_source}},
                 request.videos.segments);
}

}  // namespace

void register_tune(CLI::App& app) {
  auto f = std::make_shared<TuneFlags>();
  auto* sub = app.add_subcommand("tune", "Search per-step token budgets under a performance target");
  sub->add_option("--study", f->study, "the study's name in the store (resumes it if it exists)")->required();
  add_model_flags(sub, f->model, f->weights, f->frames, f->height, f->width);
  sub->add_option("--steps", f->steps, "sampling steps (default: the preset's)");
  sub->add_option("--dense-steps", f->dense_steps, "first steps forced dense")->default_val(2);
  sub->add_option("--grid", f->grid, "budget grid")->default_val(0.1);
  sub->add_option("--min-budget", f->min_budget, "lowest budget a step may take (0 allows skipping steps)")->default_val(0.0);
  sub->add_option("--target-speedup", f->target_speedup, "predicted speedup over dense to meet");
  sub->add_option("--target-latency-ms", f->target_latency_ms, "predicted latency to meet, ms");
  sub->add_option("--target-compute", f->target_compute, "share of dense compute (mean budget) to meet");
  sub->add_option(
         "--genome", f->genome,
         "budgets (a token budget per step) or mixed (each step also may reuse the block stack's last "
         "residual, a step-cache decision)")
      ->default_val("budgets");
  sub->add_option(
      "--step-costs", f->step_costs,
      "the step-cost table (astraea-bench step-costs) the search prices schedules with, instead of a "
      "profile; with --genome mixed it also prices a reusing step");
  sub->add_option("--algorithm", f->algorithm, "ea (the paper's) or nsga2")->default_val("ea");
  sub->add_option("--method", f->method, "the method whose per-step schedule is searched")
      ->default_val("astraea");
  sub->add_option("--population", f->population, "population size")->default_val(8)->check(CLI::Range(2, 1000));
  sub->add_option("--generations", f->generations, "generations")->default_val(5)->check(CLI::Range(0, 10000));
  sub->add_option("--prompt", f->prompts, "calibration prompt (repeatable)");
  sub->add_option("--calibration-prompts", f->prompts_file, "calibration prompts, one per line");
  sub->add_option("--seeds", f->seeds, "calibration seeds, comma-separated")->default_val("0");
  sub->add_option("--fitness", f->fitness, "metric names, comma-separated: psnr, vbench-proxy, or both")
      ->default_val("psnr");
  sub->add_option(
      "--latency-model", f->latency_model,
      "take latency from another profiled PRESET@FxHxW, or PRESET@FxHxW@RANKS to tune for RANKS GPUs");
  sub->add_option("--devices", f->devices, "where trials run: cpu, or cuda:0,cuda:1,... (one evaluation at a time on each)")
      ->default_val("cpu");
  sub->add_option("--validation-prompt", f->validation_prompts, "held-out prompt for the final check (repeatable)");
  sub->add_option("--validation-count", f->validation_count,
                  "without --validation-prompt: this many fresh prompts from the grammar (0: no check)")
      ->default_val(4);
  sub->add_option(
         "--measure-repeats", f->measure_repeats,
         "time dense, the best and the equal-cost uniform schedule this many times each, whole sampling runs "
         "on the latency model's preset and shape, interleaved (0: predicted latency only)")
      ->default_val(2)
      ->check(CLI::Range(0, 100));
  sub->add_option("--save-videos", f->save_videos,
                  "write the held-out videos (dense, best, uniform) and an index.json into this folder");
  sub->add_option("--seed", f->seed, "search seed")->default_val(0);
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  sub->add_option("--export", f->export_path, "write the best schedule here (docs/schedule.md)");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
