#include "tuner/tune.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace astraea::tuner {
namespace {

std::string size_text(int64_t frames, int64_t height, int64_t width) {
  return std::to_string(frames) + "x" + std::to_string(height) + "x" + std::to_string(width);
}

// The keys a study's trials depend on: same videos, same scoring.
const std::vector<std::string> kResumeKeys = {"model",   "frames",  "height", "width",          "steps",
                                              "fitness", "prompts", "seeds",  "weights_digest", "world_size"};

nlohmann::json study_config(const TuneRequest& r, const TuneOutcome& out) {
  const auto& v = r.videos;
  nlohmann::json config{{"model", v.model},
                        {"frames", v.frames},
                        {"height", v.height},
                        {"width", v.width},
                        {"steps", r.space.steps},
                        {"dense_steps", r.space.dense_steps},
                        {"grid", r.space.grid},
                        {"fitness", r.fitness_name},
                        {"prompts", r.prompts},
                        {"seeds", v.seeds},
                        {"latency_model", out.latency_source},
                        {"latency_model_kind", out.latency.kind()},
                        {"weights_digest", r.weights_digest}};
  config["world_size"] = r.latency_world_size;
  if (r.reuse_share >= 0)
    config["genome"] = {{"kind", "mixed"},
                        {"reuse_share", r.reuse_share}};  // the deployment tuned for: the schedules' segments
  if (out.latency.work_proportional) config["latency_model_fallback"] = out.latency.why;
  return config;
}

// The held-out check and the measured speed, as one `validation` run.
db::RunRecord validation_run(const TuneRequest& r, const TuneOutcome& out) {
  const auto& best = out.search.best;
  db::RunRecord run;
  run.kind = "validation";
  run.git_revision = r.git_revision;
  run.device = r.card;
  auto measure = [&](const std::string& name, double value, const std::string& unit,
                     const std::string& source) {
    run.measurements.push_back({name, unit, value, std::nullopt, std::nullopt, "", source});
  };
  nlohmann::json config{{"study", r.study},
                        {"genome", best.genome},
                        {"prompts", r.held_out},
                        {"seeds", r.videos.seeds},
                        {"fitness_metric", r.fitness_name},
                        {"latency_model_kind", out.latency.kind()},
                        {"uniform_budget", out.uniform.back()},
                        {"command", r.command_line}};
  if (r.latency_world_size > 1) config["world_size"] = r.latency_world_size;
  measure("calibration_fitness", best.fitness, "", "quality");
  measure("predicted_ms", best.cost_ms, "ms", "latency model");
  measure("predicted_dense_ms", out.dense_ms, "ms", "latency model");
  if (const auto& h = out.held_out) {
    measure("validation_fitness", fitness_of(h->tuned, r.metrics), "", "quality");
    measure("psnr", h->tuned.of("psnr"), "dB", "quality");
    measure("uniform_psnr", h->uniform.of("psnr"), "dB", "quality");
    if (h->vbench) {
      measure("vbench_total", h->tuned.of("vbench-proxy"), "", "quality");
      measure("dense_vbench_total", h->dense_vbench, "", "quality");
      measure("uniform_vbench_total", h->uniform.of("vbench-proxy"), "", "quality");
    }
  }
  if (const auto& s = out.speed) {
    const std::string& clock = s->dense.clock;  // measure_speed's: "wall, synchronized"
    measure("measured_dense_ms", s->dense.median_ms, "ms", clock);
    measure("measured_ms", s->tuned.median_ms, "ms", clock);
    measure("measured_uniform_ms", s->uniform.median_ms, "ms", clock);
    measure("measured_speedup", s->dense.median_ms / s->tuned.median_ms, "x", clock);
    measure("measured_noise", s->tuned.noise, "", clock);
    measure("measured_dense_noise", s->dense.noise, "", clock);
    config["measured_on"] = out.measured_on;
  }
  run.config_json = config.dump();
  return run;
}

}  // namespace

TuneOutcome tune(db::Store& store, const TuneRequest& r, const TuneCallbacks& callbacks) {
  TuneOutcome out;
  const auto& v = r.videos;
  RunnerSetup measured_on{v.model, v.weights, v.frames, v.height, v.width, v.steps, {0}, {v.devices.at(0)}};
  out.latency_source = v.model + "@" + size_text(v.frames, v.height, v.width) + " on " + r.card;
  if (!r.latency_model.empty()) {
    measured_on = {r.latency_model, "random", r.latency_frames, r.latency_height, r.latency_width,
                   v.steps,         {0},      {v.devices.at(0)}};
    out.latency_source =
        r.latency_model + "@" + size_text(r.latency_frames, r.latency_height, r.latency_width);
  }
  if (r.latency_world_size > 1)
    out.latency_source += " on " + std::to_string(r.latency_world_size) + " ranks";
  out.measured_on =
      measured_on.model + "@" + size_text(measured_on.frames, measured_on.height, measured_on.width);
  std::optional<LatencyFit> fit;
  if (!r.step_cost_ms.empty()) {
    fit = LatencyFit{LatencyModel(r.step_cost_ms), false, ""};
    out.latency_source = r.step_cost_source;
  } else {
    fit = stored_latency(store, measured_on.model, measured_on.frames, measured_on.height, measured_on.width,
                         r.latency_model.empty() ? r.card : "", r.latency_world_size);
  }
  if (!fit) throw NoLatencyModel(out.latency_source);
  out.latency = *fit;
  if (r.reuse_share >= 0) out.latency.model.set_reuse_ms(r.reuse_share * out.latency.model.step_ms(1.0));
  if (fit->work_proportional && callbacks.on_fallback) callbacks.on_fallback(out.latency_source, *fit);
  const auto& latency = out.latency.model;
  out.dense_ms = latency.dense_ms(r.space.steps);
  if (r.target.within(Genome(static_cast<size_t>(r.space.steps), 1.0), latency)) {
    char msg[160];
    std::snprintf(msg, sizeof msg,
                  "the target is at or above dense sampling (%.1f ms predicted): nothing to search",
                  out.dense_ms);
    throw std::invalid_argument(msg);
  }

  auto study = Study::open(store, r.study, study_config(r, out), kResumeKeys);
  out.study_id = study.id();
  ScheduleRunner runner(v);
  runner.make_references(r.prompts);
  auto objective = [&](const Genome& g, size_t device) {
    return fitness_of(runner.quality(g, r.prompts, device, r.metrics), r.metrics);
  };
  StudyWorker worker;
  worker.devices = v.devices.size();
  worker.name = this_worker(r.card);
  worker.card = r.card;
  const auto evaluate = study.evaluator(objective, latency, worker);
  SearchOptions options = r.search;
  options.on_generation = callbacks.on_generation;
  out.search = r.algorithm == "nsga2" ? nsga2(r.space, latency, r.target, evaluate, options)
                                      : evolve(r.space, latency, r.target, evaluate, options);
  out.counts = study.counts();
  out.evaluation_seconds = study.evaluation_seconds();
  out.best_trial_id = study.trial_id(out.search.best.genome);

  out.uniform = equal_cost_uniform(out.search.best.genome, latency, r.space.dense_steps);
  if (!r.held_out.empty()) {
    if (callbacks.on_phase) callbacks.on_phase("held-out");
    out.held_out = check_held_out(runner, out.search.best.genome, out.uniform, r.held_out, r.save_videos);
  }
  if (r.measure_repeats > 0) {
    if (callbacks.on_phase) callbacks.on_phase("measure");
    out.speed =
        measure_speed(measured_on, out.search.best.genome, out.uniform, r.measure_repeats, options.seed);
  }
  if (out.held_out || out.speed) store.add_run(validation_run(r, out));
  return out;
}

}  // namespace astraea::tuner
