// astraea-bench profile: the latency of one sampling step at each token budget, timed under the
// nvbench-style protocol, then traced in a separate pass to attribute the step's device time (or,
// on the CPU, wall-clock time) to operations. Stored as the latency model of (model, size, card)
// that the tuner reads, and printed as a table.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "apps/commands.h"
#include "apps/launched.h"
#include "apps/progress.h"
#include "apps/provenance.h"
#include "db/store.h"
#include "engine/generate.h"
#include "engine/guided_step.h"
#include "engine/methods.h"
#include "model/denoiser.h"
#include "model/ranges.h"
#include "model/torch_compat.h"
#include "parallel/lockstep.h"
#include "profiler/profiler.h"
#include "profiler/timing.h"
#include "tuner/latency_model.h"

namespace astraea::app {
namespace {

struct ProfileFlags {
  std::string model = "tiny", weights = "random", budgets = "1,0.7,0.5,0.4,0.3", device = "cpu", dtype,
              db = "astraea.db", trace, format = "table", method = "astraea", parallel = "auto";
  int64_t frames = 0, height = 0, width = 0;
  double guidance = -1;
  bool no_store = false;
  profiler::TimingOptions timing;
};

struct Row {
  std::string label;  // "dense", the budget, or the method's name
  double budget = 1;  // NaN: not an ASTRAEA budget (the plain dense forward, or another method)
  profiler::TimingStats stats;
  bool inverted = false;  // still out of order with another budget beyond the noise after re-timing
};

std::string format_budget(double b) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", b);
  return text;
}

// How many times the budgets caught out of order are timed again before the profile gives up and
// marks them (the tuner then falls back to the work-proportional model).
constexpr int kRetimings = 2;

struct OrderedTiming {
  std::vector<profiler::TimingStats> stats;  // per variant
  std::set<double> inverted;                 // budgets still out of order after the re-timings
};

// Times VARIANTS (0: dense, then one per budget) interleaved with progress on stderr, then times
// again, among themselves, the budgets whose medians contradict their order beyond the noise.
OrderedTiming time_until_ordered(const std::vector<profiler::Sampler>& variants,
                                 const std::vector<double>& budgets, const profiler::TimingOptions& options,
                                 const std::function<std::string(size_t)>& label) {
  auto timed = [&](const std::vector<size_t>& which, uint64_t seed, const std::string& what) {
    std::vector<profiler::Sampler> chosen;
    for (size_t v : which) chosen.push_back(variants[v]);
    const double limit_s = options.max_seconds * static_cast<double>(which.size());
    const auto t0 = std::chrono::steady_clock::now();
    Progress progress(what, options.max_reps);
    const auto out = profiler::measure_interleaved(
        chosen, options, seed, {}, [&](int round, const std::vector<profiler::TimingStats>& s) {
          // The rounds left: the fewer of the round limit and what the time limit allows at this pace.
          const double per_round =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / round;
          const double by_time = per_round > 0 ? std::ceil(limit_s / per_round) : options.max_reps;
          progress.set_total(
              std::max<int64_t>(round, std::min<int64_t>(options.max_reps, static_cast<int64_t>(by_time))));
          size_t noisiest = 0;
          for (size_t k = 1; k < s.size(); ++k)
            if (s[k].noise > s[noisiest].noise) noisiest = k;
          char extra[120];
          std::snprintf(extra, sizeof extra, "round %d, noisiest %s at %.1f%% (target %.1f%%)", round,
                        label(which[noisiest]).c_str(), 100 * s[noisiest].noise, 100 * options.noise);
          progress.update(round, extra);
        });
    progress.finish();
    return out;
  };
  std::vector<size_t> all(variants.size());
  std::iota(all.begin(), all.end(), size_t{0});
  OrderedTiming result{timed(all, 0, "profile"), {}};
  auto inverted = [&] {
    std::map<double, tuner::LatencyPoint> points;
    for (size_t i = 0; i < budgets.size(); ++i)
      points[budgets[i]] = {result.stats[i + 1].median_ms, result.stats[i + 1].noise};
    return tuner::inverted_budgets(points);
  };
  for (int attempt = 1; attempt <= kRetimings; ++attempt) {
    const auto bad = inverted();
    if (bad.empty()) return result;
    std::vector<size_t> again;
    std::string names;
    for (double b : bad) {
      again.push_back(static_cast<size_t>(std::find(budgets.begin(), budgets.end(), b) - budgets.begin()) +
                      1);
      names += (names.empty() ? "" : ", ") + format_budget(b);
    }
    std::fprintf(
        stderr,
        "profile: budgets %s measured out of order beyond their noise; timing them again (%d of %d)\n",
        names.c_str(), attempt, kRetimings);
    const auto retimed = timed(again, static_cast<uint64_t>(attempt), "re-time");
    for (size_t k = 0; k < again.size(); ++k) result.stats[again[k]] = retimed[k];
  }
  for (double b : inverted()) result.inverted.insert(b);
  return result;
}

// A guided step of MODEL under METHOD, its state primed by the first of two steps: call it as step
// 1 of 2 to time what a step of generate after a first step costs.
std::unique_ptr<engine::GuidedStep> primed_step(const Denoiser& model,
                                                std::shared_ptr<const engine::Accelerator> method,
                                                double guidance, const at::Tensor& x, const at::Tensor& ctx,
                                                std::shared_ptr<const Collective> cfg_group) {
  auto step = std::make_unique<engine::GuidedStep>(model, std::move(method), guidance, std::move(cfg_group));
  (*step)(x, {0, 2, 999.0}, ctx, ctx);
  return step;
}

// ASTRAEA at budget B after a dense step.
std::shared_ptr<const engine::Accelerator> at_budget(const Denoiser& model, double b) {
  TokenBudgetSchedule schedule;
  schedule.model = model.config().name;
  schedule.budgets = {1.0, b};
  return engine::make_astraea(schedule);
}

// One warning line for the budgets whose noise stayed above the target, one for those still out of
// order: both are marked in the table, the JSON and the store.
void warn_about(const std::vector<Row>& rows, double target) {
  std::string noisy, inverted;
  for (const auto& r : rows) {
    const std::string& name = r.label;
    char item[80];
    std::snprintf(item, sizeof item, "%s (%.1f%%)", name.c_str(), 100 * r.stats.noise);
    if (!r.stats.converged) noisy += (noisy.empty() ? "" : ", ") + std::string(item);
    if (r.inverted) inverted += (inverted.empty() ? "" : ", ") + name;
  }
  if (!noisy.empty())
    std::fprintf(stderr, "warning: noise stayed above the %.1f%% target for %s: marked noisy\n", 100 * target,
                 noisy.c_str());
  if (!inverted.empty())
    std::fprintf(
        stderr,
        "warning: budgets %s are still slower than a higher budget beyond their noise: marked inverted; "
        "tune will use the work-proportional latency model\n",
        inverted.c_str());
}

void run(const ProfileFlags& f) {
  // ASTRAEA is profiled at each of --budgets (the tuner's latency model); another method is timed
  // as one step after a first one (step 1 of 2), against dense.
  const auto other = f.method == "astraea" ? nullptr : method_flag(f.method, model_preset(f.model).name, 2);
  const auto budgets = other ? std::vector<double>{} : parse_number_list("--budgets", f.budgets, 0.0, 1.0);
  for (double b : budgets) {
    if (b == 0.0) throw UsageError("--budgets: 0 skips the step and costs nothing; profile budgets in (0, 1]");
  }
  if (!f.trace.empty()) check_output_path("--trace", f.trace, {".json"});
  if (f.timing.max_reps < f.timing.min_reps) throw UsageError("--max-reps must be at least --min-reps");
  const auto& config = model_preset(f.model);
  const auto shape =
      video_shape(config, f.frames ? f.frames : config.default_frames,
                  f.height ? f.height : config.default_height, f.width ? f.width : config.default_width);
  const double guidance = f.guidance >= 0 ? f.guidance : config.default_guidance;
  // Launched as one of several ranks: every step splits over them as generate's do, rank 0 decides
  // the timing protocol and the others follow (parallel/lockstep.h); rank 0 alone prints and
  // stores, its time being the slowest rank's (each step ends in a collective).
  std::string device_text = f.device;
  const auto launched = join_launched(f.parallel, config, guidance, device_text);
  const auto device = parse_device(device_text);
  const auto dtype = parse_dtype(f.dtype, device);
  const int calls = guidance != 1.0 ? 2 : 1;
  std::optional<db::Store> store;
  if (!f.no_store && launched.leader()) store.emplace(db::Store::open(f.db));  // before the slow part

  at::NoGradGuard no_grad;
  GenerateOptions load;  // "random": seed 0; a file: its weights, with the parts it decides (position features)
  load.model = f.model;
  load.weights = f.weights;
  load.device = device_text;
  load.dtype = f.dtype;
  const auto loaded = launched.split(load_model(load));
  const auto cfg_group = launched.groups.cfg;
  const Denoiser& model = *loaded;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const auto ctx = model.has_text_encoder()
                       ? model.embed_context(model.encode_prompt(""))
                       : model.embed_context(at::randn({config.text_len, config.text_dim}, gen).to(device, dtype));
  const auto x = at::randn({config.in_channels, shape.latent_f, shape.latent_h, shape.latent_w}, gen).to(device);
  auto timer = profiler::make_timer(device);
  const auto env = profiler::environment(device);

  // One guided step as generate runs it (engine::GuidedStep: a model call per guidance branch, each
  // with its own caches). Variant 0 is the dense method (no caches), then ASTRAEA at each budget
  // with caches primed by a dense step; all are timed interleaved, so that a load change on a
  // shared machine falls on every budget alike.
  auto dense_step =
      std::make_unique<engine::GuidedStep>(model, engine::make_method("dense"), guidance, cfg_group);
  // The methods of the timed steps, in variant order after dense: one per budget, or the other one.
  std::vector<std::shared_ptr<const engine::Accelerator>> methods;
  for (double b : budgets) methods.push_back(at_budget(model, b));
  if (other) methods.push_back(other);
  std::vector<std::unique_ptr<engine::GuidedStep>> timed_steps;
  for (const auto& m : methods) timed_steps.push_back(primed_step(model, m, guidance, x, ctx, cfg_group));
  std::vector<profiler::Sampler> variants;
  variants.push_back([&] { return timer->time_ms([&] { (*dense_step)(x, {0, 1, 500.0}, ctx, ctx); }); });
  for (size_t i = 0; i < methods.size(); ++i) {
    variants.push_back([&, i] {
      return timer->time_ms([&] { (*timed_steps[i])(x, {1, 2, 500.0}, ctx, ctx); });
    });
  }
  auto label = [&](size_t v) {
    return v == 0 ? std::string("dense") : other ? other->name() : format_budget(budgets[v - 1]);
  };
  OrderedTiming stats;
  if (launched.world) {
    const parallel::Lockstep lockstep(launched.world, device);
    if (launched.leader()) {
      stats = time_until_ordered(lockstep.lead(variants), budgets, f.timing, label);
      lockstep.finish();
    } else {
      lockstep.follow(variants);
      stats.stats.resize(variants.size());  // rank 0's are the ones reported
    }
  } else {
    stats = time_until_ordered(variants, budgets, f.timing, label);
  }

  std::vector<Row> rows;
  for (size_t v = 0; v < variants.size(); ++v) {
    Row row;
    row.label = label(v);
    row.budget = v == 0 || other ? std::nan("") : budgets[v - 1];
    row.stats = stats.stats[v];
    row.stats.clock = timer->clock();
    row.inverted = v > 0 && !other && stats.inverted.count(budgets[v - 1]) > 0;
    rows.push_back(row);
  }
  if (launched.leader()) warn_about(rows, f.timing.noise);

  // The traced pass, apart from the timed one: one step per timed method, step i = methods[i].
  // On the CPU there is no device to trace: the pass times its ranges by the wall clock, labelled so.
  profiler::Profiler prof(device.is_cuda() ? profiler::make_cupti_source() : nullptr, [](const std::string& w) { std::fprintf(stderr, "warning: %s\n", w.c_str()); });
  {
    std::vector<std::unique_ptr<engine::GuidedStep>> steps;
    for (const auto& m : methods) steps.push_back(primed_step(model, m, guidance, x, ctx, cfg_group));
    compat::synchronize(device);
    prof.start();
    for (size_t i = 0; i < methods.size(); ++i) {
      const auto range = ScopedRange::step(static_cast<int64_t>(i));
      (*steps[i])(x, {1, 2, 500.0}, ctx, ctx);
      compat::synchronize(device);
    }
  }
  const auto profile = prof.stop();
  // Every rank's trace reaches rank 0, which writes them as one (a process row per rank and track).
  const auto traces =
      launched.world && !f.trace.empty()
          ? parallel::gather_text(*launched.world, profiler::chrome_trace_json(profile), device)
          : std::vector<std::string>{};
  if (!launched.leader()) return;
  if (!f.trace.empty())
    profiler::write_trace_text(
        traces.empty() ? profiler::chrome_trace_json(profile) : profiler::merge_chrome_traces(traces),
        f.trace);

  const double dense_ms = rows[0].stats.median_ms;
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    nlohmann::json j{{"budget", i == 0  ? nlohmann::json("dense")
                                : other ? nlohmann::json()
                                        : nlohmann::json(r.budget)},
                     {"step_ms", r.stats.median_ms},
                     {"min_ms", r.stats.min_ms},
                     {"max_ms", r.stats.max_ms},
                     {"noise", r.stats.noise},
                     {"rounds", r.stats.reps},
                     {"noisy", !r.stats.converged},
                     {"inverted", r.inverted},
                     {"of_dense", r.stats.median_ms / dense_ms},
                     {"clock", r.stats.clock}};
    if (i > 0 && other) j["method"] = other->name();
    if (i > 0) {
      const auto it = profile.attribution.step_ns.find(static_cast<int64_t>(i - 1));
      if (it != profile.attribution.step_ns.end()) {
        j["traced_ms"] = static_cast<double>(it->second) / 1e6;
        j["traced_clock"] = profile.clock;
      }
    }
    out.push_back(j);
  }

  if (store) {
    for (size_t i = 1; i < rows.size(); ++i) {
      const auto& r = rows[i];
      db::RunRecord run;
      run.kind = "profile";
      nlohmann::json c{{"model", config.name},
                       {"frames", shape.frames},
                       {"height", shape.height},
                       {"width", shape.width},
                       {"tokens", shape.tokens()},
                       {"budget", r.budget},
                       {"guidance", guidance},
                       {"calls_per_step", calls},
                       {"dtype", dtype == at::kBFloat16 ? "bf16" : "fp32"},
                       {"weights", f.weights},
                       {"method", methods[i - 1]->name()},
                       {"command", command_line()}};
      if (launched.world_size() > 1) {  // absent: one rank (the views read it so)
        c["world_size"] = launched.world_size();
        c["parallel"] = launched.layout_text();
      }
      if (other) c["method_params"] = other->params();
      run.config_json = c.dump();
      run.git_revision = git_revision();
      run.device = env.value("device", f.device);
      run.versions_json = env.dump();
      const std::string clock = r.stats.clock;
      auto add = [&](const std::string& name, const std::string& unit, double v, std::string op = "",
                     std::optional<int64_t> block = std::nullopt, const std::string& source = "") {
        run.measurements.push_back({name, unit, v, std::nullopt, block, std::move(op), source.empty() ? clock : source});
      };
      add("step_ms", "ms", r.stats.median_ms);
      add("step_ms_min", "ms", r.stats.min_ms);
      add("step_ms_max", "ms", r.stats.max_ms);
      add("step_noise", "", r.stats.noise);
      add("reps", "", r.stats.reps);
      add("noisy", "", r.stats.converged ? 0 : 1);
      add("inverted", "", r.inverted ? 1 : 0);
      add("noise_target", "", f.timing.noise);
      add("dense_step_ms", "ms", dense_ms);
      add("dense_step_noise", "", rows[0].stats.noise);
      // Per operation, summed over blocks, from the traced pass.
      std::map<std::string, double> per_op;
      for (const auto& t : profile.attribution.ops) {
        if (t.where.step != static_cast<int64_t>(i - 1)) continue;
        per_op[t.where.op == Op::kNone ? "outside operations" : op_name(t.where.op)] += static_cast<double>(t.total_ns) / 1e6;
      }
      for (const auto& [op, ms] : per_op) add("op_ms", "ms", ms, op, std::nullopt, profile.clock);
      if (out[i].contains("traced_ms")) add("traced_step_ms", "ms", out[i]["traced_ms"].get<double>(), "", std::nullopt, profile.clock);
      store->add_run(run);
    }
  }

  if (f.format == "json") {
    std::cout << nlohmann::json{{"model", config.name}, {"tokens", shape.tokens()}, {"device", env.value("device", "")},
                                {"calls_per_step", calls}, {"rows", out}, {"environment", env}}
                     .dump(2)
              << "\n";
    return;
  }
  std::printf("%s, %lldx%lldx%lld (%lld tokens), %d model call%s a step, %s\n", config.name.c_str(),
              static_cast<long long>(shape.frames), static_cast<long long>(shape.height),
              static_cast<long long>(shape.width), static_cast<long long>(shape.tokens()), calls, calls > 1 ? "s" : "",
              (env.value("device", "") + (env.value("device", "") == "cpu" && env.contains("cpu_threads")
                                              ? " (" + env["cpu_threads"].get<std::string>() + ")"
                                              : std::string())).c_str());
  std::printf("%-8s %10s %9s %10s %10s %7s %6s %11s %9s\n", "budget", "step ms", "of dense", "min ms",
              "max ms", "noise", "rounds", "traced ms", "traced/ms");
  for (const auto& j : out) {
    const std::string b = j["budget"].is_string() ? "dense"
                          : j["budget"].is_null() ? j["method"].get<std::string>()
                                                  : std::to_string(j["budget"].get<double>()).substr(0, 4);
    std::printf("%-8s %10.3f %9.3f %10.3f %10.3f %6.1f%%%s %6d", b.c_str(), j["step_ms"].get<double>(),
                j["of_dense"].get<double>(), j["min_ms"].get<double>(), j["max_ms"].get<double>(),
                100 * j["noise"].get<double>(), j["noisy"].get<bool>() ? "*" : " ", j["rounds"].get<int>());
    // Traced over timed: how much of the step the trace accounts for (near 1 when nothing is missed).
    if (j.contains("traced_ms"))
      std::printf(" %11.3f %9.3f", j["traced_ms"].get<double>(), j["traced_ms"].get<double>() / j["step_ms"].get<double>());
    if (j["inverted"].get<bool>()) std::printf("  inverted");
    std::printf("\n");
  }
  std::printf(
      "noise: * above the %.1f%% target (noisy); the budgets were timed interleaved, in a shuffled order "
      "each round\n",
      100 * f.timing.noise);
  std::printf("timed with %s; traced ms: %s, one step per budget in a separate pass%s\n", rows[0].stats.clock.c_str(),
              profile.clock == "cupti" ? "device kernel time attributed by CUPTI" : "wall clock (no device trace)",
              f.no_store ? "" : ("; stored in " + f.db).c_str());
}

}  // namespace

void register_profile(CLI::App& app) {
  auto f = std::make_shared<ProfileFlags>();
  auto* sub = app.add_subcommand("profile", "Per-step latency at each token budget: the latency model the tuner reads");
  add_model_flags(sub, f->model, f->weights, f->frames, f->height, f->width,
                  "safetensors file, or 'random' (the default: latency does not depend on the values)");
  auto* budgets =
      sub->add_option("--budgets", f->budgets, "ASTRAEA's token budgets in (0, 1], comma-separated")
          ->default_val(f->budgets);
  sub->add_option(
         "--method", f->method,
         "astraea (at each of --budgets), or another method NAME[:KEY=VALUE,...] timed as one step after a "
         "first one")
      ->default_val(f->method)
      ->excludes(budgets);
  sub->add_option("--guidance", f->guidance, "guidance scale: 1 makes a step one model call, anything else two");
  add_device_flag(sub, f->device);
  sub->add_option("--dtype", f->dtype, "fp32 or bf16 (default: bf16 on CUDA, fp32 on the CPU)");
  add_parallel_flag(sub, f->parallel);
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  sub->add_flag("--no-store", f->no_store, "print only");
  sub->add_option("--trace", f->trace, "also write the traced pass as Chrome/Perfetto JSON");
  sub->add_option("--format", f->format, "table or json")->default_val("table")->check(CLI::IsMember({"table", "json"}));
  sub->add_option("--warmup", f->timing.warmup, "untimed steps first")->default_val(f->timing.warmup)->check(CLI::NonNegativeNumber);
  sub->add_option("--min-reps", f->timing.min_reps)->default_val(f->timing.min_reps)->check(CLI::PositiveNumber);
  sub->add_option("--max-reps", f->timing.max_reps)->default_val(f->timing.max_reps)->check(CLI::PositiveNumber);
  sub->add_option("--max-seconds", f->timing.max_seconds,
                  "time limit per budget (the interleaved rounds get this times the budgets and dense)")
      ->default_val(f->timing.max_seconds);
  sub->add_option("--noise", f->timing.noise, "stop repeating once the relative noise is under this")
      ->default_val(f->timing.noise);
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
