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
#include "core/dit.h"
#include "core/atomic_file.h"
#include "core/generate.h"
#include "core/safetensors.h"
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
  int validation_count = 4, measure_repeats = 2;
  std::string save_videos;
  int64_t frames = 0, height = 0, width = 0, steps = 0, dense_steps = 2;
  double target_speedup = 0, target_latency_ms = 0, target_compute = 0, grid = 0.1, min_budget = 0;
  int population = 8, generations = 5;
  uint64_t seed = 0;
};

// The latency model of (model, size, device) from the store: the measured line, or the
// work-proportional one where the profile's times do not grow with the budget (said in one line).
// nullopt if nothing was profiled.
std::optional<tuner::LatencyFit> stored_latency(const db::Store& store, const std::string& model,
                                                const VideoShape& shape, const std::string& device,
                                                const std::string& source) {
  const auto rows = store.latency_rows(model, shape.frames, shape.height, shape.width, device);
  if (rows.empty()) return std::nullopt;
  std::map<double, tuner::LatencyPoint> points;
  double dense_ms = 0;
  bool marked_inverted = false;
  for (const auto& r : rows) {
    points[r.budget] = {r.step_ms, r.noise};
    if (r.dense_step_ms > 0) dense_ms = r.dense_step_ms;
    marked_inverted = marked_inverted || r.inverted;
  }
  if (dense_ms <= 0)
    dense_ms =
        points.count(1.0) ? points.at(1.0).step_ms : points.rbegin()->second.step_ms / points.rbegin()->first;
  auto fit = tuner::fit_latency(points, dense_ms);
  if (!fit.work_proportional && marked_inverted) {
    fit = {tuner::LatencyModel::work_proportional(dense_ms), true, "the profile marked budgets inverted"};
  }
  if (fit.work_proportional) {
    std::fprintf(
        stderr,
        "warning: latency model %s: %s; using the work-proportional model instead (dense step %.1f ms x "
        "budget); re-profile on a quiet machine for a measured one\n",
        source.c_str(), fit.why.c_str(), dense_ms);
  }
  return fit;
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
  std::optional<tuner::LatencyFit> fit;
  std::string latency_source;
  // Where latency is measured: this preset and shape, or --latency-model's.
  std::string latency_preset = preset.name;
  long long latency_frames = shape.frames, latency_height = shape.height, latency_width = shape.width;
  if (f.latency_model.empty()) {
    latency_source = preset.name + "@" + std::to_string(shape.frames) + "x" + std::to_string(shape.height) + "x" +
                     std::to_string(shape.width) + " on " + card;
    fit = stored_latency(store, preset.name, shape, card, latency_source);
  } else {
    // PRESET@FxHxW: latency measured on another model and shape (any card, newest first).
    const auto at = f.latency_model.find('@');
    if (at == std::string::npos) {
      throw UsageError("--latency-model '" + f.latency_model + "' is not PRESET@FRAMESxHEIGHTxWIDTH");
    }
    const auto size = parse_video_size(f.latency_model.substr(at + 1), "--latency-model size");
    const auto& other = model_preset(f.latency_model.substr(0, at));
    latency_source = f.latency_model;
    fit = stored_latency(store, other.name, video_shape(other, size.frames, size.height, size.width), "",
                         latency_source);
    latency_preset = other.name, latency_frames = size.frames, latency_height = size.height, latency_width = size.width;
  }
  if (!fit) {
    throw UsageError("--db " + f.db + " has no latency model for " + latency_source + ": run astraea-bench profile "
                     "with the same model and size first");
  }
  const tuner::LatencyModel latency = fit->model;
  const double dense_ms = latency.dense_ms(space.steps);
  if (target.within(tuner::Genome(static_cast<size_t>(space.steps), 1.0), latency)) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "the target is at or above dense sampling (%.1f ms predicted): nothing to search", dense_ms);
    throw UsageError(msg);
  }

  nlohmann::json config{{"model", preset.name},
                        {"frames", shape.frames},
                        {"height", shape.height},
                        {"width", shape.width},
                        {"steps", space.steps},
                        {"dense_steps", space.dense_steps},
                        {"grid", space.grid},
                        {"fitness", f.fitness},
                        {"prompts", prompts},
                        {"seeds", seeds},
                        {"latency_model", latency_source},
                        {"latency_model_kind", fit->kind()}};
  if (fit->work_proportional) config["latency_model_fallback"] = fit->why;
  config["weights_digest"] = weights_digest(preset.name, f.weights);
  const int64_t study = store.create_or_get_study(f.study, config.dump());
  {
    // A study resumes only where its trials' fitness still holds: same videos, same scoring.
    const auto stored = nlohmann::json::parse(store.study_config(study));
    for (const char* key : {"model", "frames", "height", "width", "steps", "fitness", "prompts", "seeds", "weights_digest"}) {
      if (stored.contains(key) && stored.at(key) != config.at(key)) {
        throw UsageError("--study " + f.study + " exists in " + f.db + " with another " + key + " (" +
                         stored.at(key).dump() + ", now " + config.at(key).dump() + "); choose another --study name");
      }
    }
  }
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
  // The model, loaded once per device: every evaluation then pays only for sampling.
  std::map<std::string, std::shared_ptr<const WanDiT>> models;
  for (const auto& d : devices) {
    GenerateOptions load;
    load.model = preset.name;
    load.weights = f.weights;
    load.device = d;
    models[d] = load_model(load);
  }
  auto options_for = [&](const std::string& prompt, uint64_t seed, const std::string& device) {
    GenerateOptions o;
    o.model = preset.name;
    o.weights = f.weights;
    o.loaded = models.at(device);
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
  // Mean PSNR (capped at 60 dB: identical videos are +inf) and VBench-proxy total of GENOME's videos
  // against the dense references of PS x seeds, with `with` metrics.
  struct Quality {
    double psnr = 0, vbench = 0;
  };
  using KeepVideo = std::function<void(const std::string& prompt, uint64_t seed, const at::Tensor& video)>;
  auto quality_of = [&](const tuner::Genome& genome, const std::vector<std::string>& ps, const std::string& device,
                        const quality::MetricSet& with, const KeepVideo& keep = {}) {
    Quality q;
    for (const auto& prompt : ps) {
      for (uint64_t seed : seeds) {
        const auto& ref = references.at({prompt, seed});
        auto o = options_for(prompt, seed, device);
        TokenBudgetSchedule schedule;
        schedule.model = preset.name;
        schedule.budgets = genome;
        o.schedule = schedule;
        const auto video = generate(o).video;
        if (keep) keep(prompt, seed, video);
        const auto s = score_video(video, &ref, prompt, 16.0, with);
        if (s.fidelity) q.psnr += std::min(60.0, s.fidelity->psnr);
        if (s.vbench) q.vbench += s.vbench->total;
      }
    }
    const double n = static_cast<double>(ps.size() * seeds.size());
    return Quality{q.psnr / n, q.vbench / n};
  };
  // The fitness: PSNR, VBench-proxy total, or for "both" the mean of PSNR / 40 and the total.
  auto fitness_of = [&](const Quality& q) {
    return metrics.fidelity && metrics.vbench ? 0.5 * (q.psnr / 40.0 + q.vbench) : metrics.fidelity ? q.psnr : q.vbench;
  };
  auto fitness_on = [&](const tuner::Genome& genome, const std::vector<std::string>& ps, const std::string& device) {
    return fitness_of(quality_of(genome, ps, device, metrics));
  };
  // One evaluation on the calibration prompts, timed: (fitness, wall seconds).
  auto timed_fitness = [&](const tuner::Genome& genome, const std::string& device) {
    const auto t0 = std::chrono::steady_clock::now();
    const double fit = fitness_on(genome, prompts, device);
    return std::make_pair(fit, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
  // A batch: claim every genome (the store answers those done before), evaluate the claimed ones
  // in parallel, one thread per --devices entry, then wait for those another worker is running.
  tuner::Evaluate evaluate = [&](const std::vector<tuner::Genome>& genomes) {
    std::vector<double> out(genomes.size());
    std::vector<std::pair<size_t, int64_t>> mine, theirs;  // (index, trial)
    auto finish = [&](size_t i, int64_t trial, const std::pair<double, double>& result) {
      store.complete_trial(trial, result.first, latency.cost_ms(genomes[i]), result.second, card);
      out[i] = result.first;
      ++evaluated_here;
    };
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
        running.push_back(std::async(std::launch::async,
                                     [&, k] { return timed_fitness(genomes[mine[k].first], devices[k - chunk]); }));
      }
      for (size_t k = chunk; k < std::min(mine.size(), chunk + devices.size()); ++k) {
        finish(mine[k].first, mine[k].second, running[k - chunk].get());
      }
    }
    for (const auto& [i, trial] : theirs) {  // another live worker has it: wait for its result
      for (;;) {
        const auto t = store.read_trial(trial);
        if (t.state == db::TrialState::kComplete && t.fitness) {
          out[i] = *t.fitness;
          ++answered_by_store;
          break;
        }
        if (stale(t.claimed_by)) {  // it died after claiming: evaluate the genome here, as at claim time
          finish(i, trial, timed_fitness(genomes[i], devices.front()));
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
  db::RunRecord run;
  run.kind = "validation";
  run.git_revision = git_revision();
  run.device = card;
  nlohmann::json validation_config{
      {"study", f.study},         {"genome", best.genome},       {"prompts", held_out},
      {"seeds", seeds},           {"fitness_metric", f.fitness}, {"latency_model_kind", fit->kind()},
      {"command", command_line()}};
  auto measure = [&](const std::string& name, double value, const std::string& unit, const std::string& source) {
    run.measurements.push_back({name, unit, value, std::nullopt, std::nullopt, "", source});
  };
  measure("calibration_fitness", best.fitness, "", "quality");
  measure("predicted_ms", best.cost_ms, "ms", "latency model");
  // The uniform schedule of equal predicted cost: the same dense warm-up, then one budget. Beating it
  // on prompts the search never saw is the point of searching.
  tuner::Genome uniform(best.genome.size(), 1.0);
  {
    const auto k = static_cast<size_t>(space.dense_steps);
    const double rest = static_cast<double>(uniform.size() - k);
    const double per_step = rest > 0 ? (best.cost_ms - static_cast<double>(k) * latency.step_ms(1.0)) / rest : 0.0;
    const double u = rest > 0 ? std::clamp((per_step - latency.intercept_ms()) / latency.slope_ms(), 0.01, 1.0) : 1.0;
    std::fill(uniform.begin() + static_cast<std::ptrdiff_t>(k), uniform.end(), u);
    validation_config["uniform_budget"] = u;
  }
  if (!held_out.empty()) {
    for (const auto& p : held_out) shapes::parse_prompt(p);
    make_references(held_out);
    // Both metrics where this build has optical flow and the videos are large enough; without flow
    // (the GPU host has no OpenCV) PSNR alone, and --save-videos keeps the videos for
    // `astraea-bench score` on a machine that has it.
    const bool flow = quality::has_optical_flow() && quality::vbench_applies(shape.frames, shape.height, shape.width);
    const quality::MetricSet both{true, flow};
    nlohmann::json index = nlohmann::json::array();
    auto keeper = [&](const std::string& kind) -> KeepVideo {
      if (f.save_videos.empty()) return {};
      return [&, kind](const std::string& prompt, uint64_t seed, const at::Tensor& video) {
        const auto i = static_cast<size_t>(std::find(held_out.begin(), held_out.end(), prompt) - held_out.begin());
        const std::string stem = "heldout" + std::to_string(i) + "_seed" + std::to_string(seed) + "_";
        auto save = [&](const std::string& file, const at::Tensor& v) {
          const auto t = v.contiguous();
          write_safetensors(f.save_videos + "/" + file, {{"video", DType::F32, t.sizes().vec(), t.data_ptr()}},
                            {{"prompt", prompt}, {"seed", std::to_string(seed)}});
        };
        save(stem + kind + ".safetensors", video);
        if (kind == "tuned") save(stem + "dense.safetensors", references.at({prompt, seed}));  // once, not per kind
        index.push_back({{"prompt", prompt}, {"seed", seed}, {"kind", kind}, {"video", stem + kind + ".safetensors"},
                         {"reference", stem + "dense.safetensors"}});
      };
    };
    if (!f.save_videos.empty()) std::filesystem::create_directories(f.save_videos);
    const auto tuned = quality_of(best.genome, held_out, devices.front(), both, keeper("tuned"));
    const auto flat = quality_of(uniform, held_out, devices.front(), both, keeper("uniform"));
    if (!f.save_videos.empty()) {
      const std::string path = f.save_videos + "/index.json";
      const std::string error = write_file_atomically(path, index.dump(2) + "\n");
      if (!error.empty()) throw std::runtime_error(path + ": " + error);
      std::printf("wrote the held-out videos and %s\n", path.c_str());
    }
    double dense_vbench = 0;
    if (flow) {
      for (const auto& p : held_out)
        for (uint64_t seed : seeds) dense_vbench += score_video(references.at({p, seed}), nullptr, p, 16.0, {false, true}).vbench->total;
      dense_vbench /= static_cast<double>(held_out.size() * seeds.size());
    }
    const double validation = fitness_of(tuned);
    std::printf("validation on %zu held-out prompts x %zu seeds: fitness %.4f (calibration %.4f)\n", held_out.size(),
                seeds.size(), validation, best.fitness);
    if (flow) {
      std::printf("  tuned:                   PSNR %6.2f dB, VBench-proxy %.4f (%+.2f%% of dense %.4f), predicted %.1f ms\n",
                  tuned.psnr, tuned.vbench, 100.0 * (tuned.vbench / dense_vbench - 1.0), dense_vbench, best.cost_ms);
      std::printf("  uniform %.3f, same cost: PSNR %6.2f dB, VBench-proxy %.4f (%+.2f%%); tuned %+.2f dB\n", uniform.back(),
                  flat.psnr, flat.vbench, 100.0 * (flat.vbench / dense_vbench - 1.0), tuned.psnr - flat.psnr);
    } else {
      std::printf("  tuned:                   PSNR %6.2f dB, predicted %.1f ms (no VBench-proxy: no optical flow or too small)\n",
                  tuned.psnr, best.cost_ms);
      std::printf("  uniform %.3f, same cost: PSNR %6.2f dB; tuned %+.2f dB\n", uniform.back(), flat.psnr,
                  tuned.psnr - flat.psnr);
    }
    measure("validation_fitness", validation, "", "quality");
    measure("psnr", tuned.psnr, "dB", "quality");
    measure("uniform_psnr", flat.psnr, "dB", "quality");
    if (flow) {
      measure("vbench_total", tuned.vbench, "", "quality");
      measure("dense_vbench_total", dense_vbench, "", "quality");
      measure("uniform_vbench_total", flat.vbench, "", "quality");
    }
  }
  if (f.measure_repeats > 0) {
    // Measured, not predicted: whole sampling runs of dense, the tuned and the uniform schedule on the
    // latency model's preset and shape (random weights when that is another preset), interleaved.
    GenerateOptions o = options_for("", 0, devices.front());
    o.loaded = nullptr;
    if (latency_preset != preset.name) {
      o.model = latency_preset;
      o.weights = "random";
      o.prompt = "";
    }
    o.frames = latency_frames, o.height = latency_height, o.width = latency_width;
    std::printf("measuring %s at %lldx%lldx%lld, %lld steps: dense, tuned and uniform, %d runs each\n", o.model.c_str(),
                static_cast<long long>(o.frames), static_cast<long long>(o.height), static_cast<long long>(o.width),
                static_cast<long long>(space.steps), f.measure_repeats);
    o.loaded = load_model(o);
    auto with_budgets = [&](const tuner::Genome& g) {
      TokenBudgetSchedule schedule;
      schedule.model = o.model;
      schedule.budgets = g;
      GenerateOptions run_o = o;
      run_o.schedule = schedule;
      return run_o;
    };
    {  // Warm-up: one call at every budget the runs will use (attention plans are built per shape).
      tuner::Genome warm{1.0};
      for (const tuner::Genome* g : {&best.genome, static_cast<const tuner::Genome*>(&uniform)})
        for (double b : *g)
          if (b > 0 && std::find(warm.begin(), warm.end(), b) == warm.end()) warm.push_back(b);
      GenerateOptions w = with_budgets(warm);
      w.steps = static_cast<int64_t>(warm.size());
      generate(w);
    }
    // Whole sampling runs, interleaved in a shuffled order each round, so that a load change on a
    // shared machine falls on all three alike; a fixed count of rounds, since each is a whole run.
    profiler::TimingOptions rounds;
    rounds.warmup = 0;
    rounds.min_reps = rounds.max_reps = f.measure_repeats;
    rounds.noise = 0.05;  // whole runs of a few repeats: 5% is what a quiet CPU gives
    const auto sampled = [&](GenerateOptions run_o) -> profiler::Sampler {
      return [run_o] { return 1e3 * generate(run_o).sample_seconds; };
    };
    const auto timed = profiler::measure_interleaved(
        {sampled(o), sampled(with_budgets(best.genome)), sampled(with_budgets(uniform))}, rounds, f.seed);
    const double dense_ms = timed[0].median_ms, tuned_ms = timed[1].median_ms,
                 uniform_ms = timed[2].median_ms;
    std::printf(
        "  measured: dense %.1f ms, tuned %.1f ms (%.2fx; predicted %.2fx), uniform %.1f ms (%.2fx); noise "
        "%.1f%%, "
        "%.1f%%, %.1f%%\n",
        dense_ms, tuned_ms, dense_ms / tuned_ms, latency.dense_ms(space.steps) / best.cost_ms, uniform_ms,
        dense_ms / uniform_ms, 100 * timed[0].noise, 100 * timed[1].noise, 100 * timed[2].noise);
    std::string noisy;
    for (size_t i = 0; i < timed.size(); ++i)
      if (!timed[i].converged)
        noisy += std::string(noisy.empty() ? "" : ", ") + (i == 0 ? "dense" : i == 1 ? "tuned" : "uniform");
    if (!noisy.empty() && f.measure_repeats > 1)
      std::fprintf(
          stderr, "warning: measured runs of %s stayed noisier than 5%%: the measured speedup is uncertain\n",
          noisy.c_str());
    measure("measured_noise", timed[1].noise, "", "wall, synchronized");
    measure("measured_dense_noise", timed[0].noise, "", "wall, synchronized");
    measure("measured_dense_ms", dense_ms, "ms", "wall, synchronized");
    measure("measured_ms", tuned_ms, "ms", "wall, synchronized");
    measure("measured_uniform_ms", uniform_ms, "ms", "wall, synchronized");
    measure("measured_speedup", dense_ms / tuned_ms, "x", "wall, synchronized");
    validation_config["measured_on"] = o.model + "@" + std::to_string(o.frames) + "x" + std::to_string(o.height) + "x" +
                                       std::to_string(o.width);
  }
  if (!held_out.empty() || f.measure_repeats > 0) {
    run.config_json = validation_config.dump();
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
    // Trials come in claim order, so among equals the earlier one stays.
    if (f.trial >= 0 ? t.number == f.trial
                     : (!pick || tuner::ranks_above(t.fitness.value_or(-INFINITY), t.predicted_cost.value_or(INFINITY),
                                                    pick->fitness.value_or(-INFINITY),
                                                    pick->predicted_cost.value_or(INFINITY)))) {
      pick = t;
    }
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
  sub->add_option("--measure-repeats", f->measure_repeats,
                  "time dense, the best and the equal-cost uniform schedule this many times each, whole sampling "
                  "runs on the latency model's preset and shape (0: predicted latency only)")
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
