// astraea-bench sweep: generate every cell of a grid (models x sizes x methods x prompts x seeds)
// and store each as one run. A cell's key is its canonical configuration, unique in the store, so
// an interrupted sweep, or several processes sharing one, never repeats or loses a cell.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "apps/commands.h"
#include "apps/progress.h"
#include "apps/provenance.h"
#include "apps/scoring.h"
#include "astraea/config.h"
#include "db/store.h"
#include "engine/generate.h"
#include "engine/methods.h"
#include "engine/schedule.h"
#include "io/safetensors.h"
#include "parallel/layout.h"
#include "profiler/timing.h"
#include "shapes/shapes_world.h"

namespace astraea::app {
namespace {

struct SweepFlags {
  std::vector<std::string> models, prompts, methods;
  std::string metrics = "both", weights, sizes, budgets, schedules, seeds = "0", prompts_file, grid, device = "cpu", db = "astraea.db", videos;
  std::string nproc = "1", parallel = "auto";  // world sizes: cells on several ranks run under launch
  int64_t frames = 0, height = 0, width = 0, steps = 0, dense_steps = 2;
  double guidance = -1;
};

struct Size {
  int64_t frames = 0, height = 0, width = 0;  // 0: the preset's
};

struct Method {
  double budget = 1;                          // 1 without a schedule: the dense reference
  std::optional<std::string> schedule_file;
  std::string spec;  // --method NAME[:PARAMS]: a registered method instead
};

struct Cell {
  GenerateOptions o;
  nlohmann::json key;
  int nproc = 1;             // ranks: above 1, generate runs under launch
  std::string method_flags;  // generate's flags for the method, for that run
};

// A private folder under the temporary directory, removed with everything in it at scope exit.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    std::string t = (std::filesystem::temp_directory_path() / (name + "-XXXXXX")).string();
    if (!mkdtemp(t.data())) throw std::runtime_error("cannot make a folder " + t);
    path_ = t;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

// CELL generated on its NPROC ranks: `astraea-bench launch --nproc P -- generate ...` into TMP, its
// video and numbers read back. A failure is one line: the first error a rank printed (the cause; the
// ranks stopped after it may print their own, such as a closed connection), else the last line.
GenerateResult launched_generate(const Cell& c, const SweepFlags& f, const std::filesystem::path& tmp) {
  const auto video = (tmp / "cell.safetensors").string(), numbers = (tmp / "cell.json").string(),
             log = (tmp / "cell.log").string();
  std::string cmd = quoted(std::filesystem::read_symlink("/proc/self/exe").string()) + " launch --nproc " +
                    std::to_string(c.nproc) + " -- generate --model " + c.o.model + " --prompt " +
                    quoted(c.o.prompt) + " --frames " + std::to_string(c.o.frames) + " --height " +
                    std::to_string(c.o.height) + " --width " + std::to_string(c.o.width) + " --steps " +
                    std::to_string(c.o.steps) + " --seed " + std::to_string(c.o.seed) + " --device " +
                    quoted(c.o.device) + " --parallel " + quoted(f.parallel) + c.method_flags + " --out " +
                    quoted(video) + " --result-json " + quoted(numbers);
  if (!c.o.weights.empty()) cmd += " --weights " + quoted(c.o.weights);
  if (c.o.guidance >= 0) cmd += " --guidance " + std::to_string(c.o.guidance);
  if (std::system((cmd + " >" + quoted(log) + " 2>&1").c_str()) != 0) {
    std::ifstream in(log);
    std::string line, last, cause;
    while (std::getline(in, line)) {
      if (!line.empty()) last = line;
      const auto at = line.find("error: ");
      if (cause.empty() && at != std::string::npos &&
          line.find_first_not_of(' ', at + 7) != std::string::npos)
        cause = line;
    }
    throw std::runtime_error("sweep: a cell on " + std::to_string(c.nproc) +
                             " ranks failed: " + (cause.empty() ? last : cause));
  }
  GenerateResult r;
  const auto file = SafetensorsFile::open(video);
  const auto& t = file.at("video");
  r.video = at::from_blob(const_cast<std::byte*>(t.data), t.shape, at::kFloat).clone();
  std::ifstream in(numbers);
  const auto j = nlohmann::json::parse(in);
  r.sample_seconds = j.at("sample_seconds");
  r.load_seconds = j.at("load_seconds");
  r.model_calls = j.at("model_calls");
  r.token_share = j.at("token_share");
  r.cache_bytes = j.at("cache_bytes");
  r.skipped_steps = j.at("skipped_steps");
  r.step_actions = j.at("step_actions").get<std::vector<std::string>>();
  return r;
}

std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("--prompts-file " + path + " cannot be read");
  std::vector<std::string> prompts;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty() && line[0] != '#') prompts.push_back(line);
  }
  if (prompts.empty()) throw UsageError("--prompts-file " + path + " has no prompts");
  return prompts;
}

std::vector<Size> parse_sizes(const std::string& text) {
  std::vector<Size> sizes;
  for (const auto& item : split_list(text)) {
    const auto v = parse_video_size(item, "--sizes item");  // std::invalid_argument: a usage error
    sizes.push_back({v.frames, v.height, v.width});
  }
  return sizes;
}

// Merges a --grid JSON file into the flags; flags given on the command line win.
void merge_grid(SweepFlags& f) {
  if (f.grid.empty()) return;
  std::ifstream in(f.grid);
  if (!in) throw UsageError("--grid " + f.grid + " cannot be read");
  nlohmann::json g;
  try {
    g = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError("--grid " + f.grid + " is not JSON: " + std::string(e.what()).substr(0, 120));
  }
  static const std::set<std::string> known = {"models",  "sizes",     "prompts", "methods",
                                              "budgets", "schedules", "seeds",   "steps"};
  auto join = [](const nlohmann::json& a) {
    std::string s;
    for (const auto& v : a) s += (s.empty() ? "" : ",") + (v.is_string() ? v.get<std::string>() : v.dump());
    return s;
  };
  try {
    for (const auto& [key, value] : g.items()) {
      if (!known.count(key)) throw UsageError("--grid " + f.grid + ": unknown field '" + key + "'");
      if (key == "steps") {
        if (!f.steps) f.steps = value.get<int64_t>();
        continue;
      }
      if (!value.is_array()) throw UsageError("--grid " + f.grid + ": field '" + key + "' must be a list");
      if (key == "models" && f.models.empty()) f.models = value.get<std::vector<std::string>>();
      if (key == "prompts" && f.prompts.empty()) f.prompts = value.get<std::vector<std::string>>();
      if (key == "methods" && f.methods.empty()) f.methods = value.get<std::vector<std::string>>();
      if (key == "sizes" && f.sizes.empty()) f.sizes = join(value);
      if (key == "budgets" && f.budgets.empty()) f.budgets = join(value);
      if (key == "schedules" && f.schedules.empty()) f.schedules = join(value);
      if (key == "seeds" && f.seeds == "0") f.seeds = join(value);
    }
  } catch (const nlohmann::json::exception& e) {
    throw UsageError("--grid " + f.grid + ": " + std::string(e.what()).substr(0, 120));
  }
}

void run(SweepFlags f) {
  merge_grid(f);
  if (f.models.empty()) f.models = {"tiny"};
  if (!f.prompts_file.empty()) {
    for (auto& p : read_prompts(f.prompts_file)) f.prompts.push_back(std::move(p));
  }
  if (f.prompts.empty()) throw UsageError("sweep needs --prompt TEXT (repeatable) or --prompts-file FILE");
  std::vector<Size> sizes = f.sizes.empty() ? std::vector<Size>{{f.frames, f.height, f.width}} : parse_sizes(f.sizes);
  std::vector<Method> methods;
  if (!f.budgets.empty()) {
    for (double b : parse_number_list("--budgets", f.budgets, 0.0, 1.0)) methods.push_back({b, std::nullopt});
  }
  for (const auto& s : split_list(f.schedules)) methods.push_back({1, s});
  for (const auto& given : f.methods) {
    std::vector<std::string> specs;
    try {
      specs = engine::expand_method_spec(given);  // one method per value of a KEY=A|B|C knob
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--method: ") + e.what());
    }
    for (const auto& spec : specs) methods.push_back({1, std::nullopt, spec});
  }
  if (methods.empty()) methods.push_back({1, std::nullopt});
  std::vector<uint64_t> seeds;
  for (double s : parse_number_list("--seeds", f.seeds, 0, 9.0e15)) {
    if (s != std::floor(s)) throw UsageError("--seeds item '" + std::to_string(s) + "' is not an integer");
    seeds.push_back(static_cast<uint64_t>(s));
  }
  if (!f.videos.empty() && !std::filesystem::is_directory(f.videos)) {
    throw UsageError("--videos " + f.videos + " is not a folder");
  }

  std::vector<int> world_sizes;
  for (double p : parse_number_list("--nproc", f.nproc, 1, 64)) {
    if (p != std::floor(p)) throw UsageError("--nproc item '" + std::to_string(p) + "' is not a whole count");
    world_sizes.push_back(static_cast<int>(p));
  }
  // Every cell, checked before any work: presets, sizes, schedules.
  std::vector<Cell> cells;
  for (int nproc : world_sizes)
    for (const auto& model : f.models) {
      const auto& preset = model_preset(model);  // throws naming an unknown preset
      if (preset.text_vocab == 0) {
        throw UsageError("--model " + model +
                         ": sweep generates from prompts, which needs a model with its own text "
                         "encoder (tiny)");
      }
      // Cells made with other weights (a retrained shipped file, say) are other cells.
      const std::string weights_digest = app::weights_digest(preset.name, f.weights);
      const int64_t steps = f.steps ? f.steps : preset.default_steps;
      for (const auto& size : sizes) {
        const auto shape = video_shape(preset, size.frames ? size.frames : preset.default_frames,
                                       size.height ? size.height : preset.default_height,
                                       size.width ? size.width : preset.default_width);
        for (const auto& m : methods) {
          std::optional<TokenBudgetSchedule> schedule;
          std::shared_ptr<const engine::Accelerator> accelerator;
          nlohmann::json method;
          std::string method_flags;
          if (!m.spec.empty()) {
            accelerator = method_flag(m.spec, preset.name, steps);
            method = {{"name", accelerator->name()}, {"params", accelerator->params()}};
            method_flags = " --method " + quoted(m.spec);
          } else if (m.schedule_file) {
            schedule = read_schedule(*m.schedule_file, preset.name, steps);
            method = {{"schedule", schedule->budgets},
                      {"selection", nlohmann::json::parse(schedule_json(*schedule))["selection"]}};
            method_flags = " --schedule " + quoted(*m.schedule_file);
          } else if (m.budget < 1.0) {
            schedule = uniform_schedule(preset.name, steps, m.budget, f.dense_steps);
            method = {{"budget", m.budget}, {"dense_steps", f.dense_steps}};
            method_flags =
                " --budget " + std::to_string(m.budget) + " --dense-steps " + std::to_string(f.dense_steps);
          } else {
            method = {{"budget", 1.0}};
          }
          for (const auto& prompt : f.prompts) {
            shapes::parse_prompt(prompt);  // throws naming the bad word
            for (uint64_t seed : seeds) {
              Cell c;
              c.o.model = preset.name;
              c.o.weights = f.weights;
              c.o.prompt = prompt;
              c.o.frames = shape.frames;
              c.o.height = shape.height;
              c.o.width = shape.width;
              c.o.steps = steps;
              c.o.guidance = f.guidance;
              c.o.seed = seed;
              c.o.device = f.device;
              c.o.schedule = schedule;
              c.o.method = accelerator;
              c.key = {{"model", preset.name},
                       {"frames", shape.frames},
                       {"height", shape.height},
                       {"width", shape.width},
                       {"steps", steps},
                       {"guidance", f.guidance},
                       {"method", method},
                       {"prompt", prompt},
                       {"seed", seed},
                       {"device", f.device},
                       {"weights", f.weights.empty() ? "shipped" : f.weights},
                       {"weights_digest", weights_digest}};
              // Absent: Euler, as cells stored before Wan presets sampled with UniPC.
              if (preset.default_sampler != "euler") c.key["sampler"] = preset.default_sampler;
              if (nproc > 1) {  // absent: one rank, as cells stored before --nproc
                // A layout that cannot split this model is refused before any work, naming the numbers.
                const double guidance = f.guidance >= 0 ? f.guidance : preset.default_guidance;
                parallel::parse_layout(f.parallel, nproc, static_cast<int>(preset.heads), guidance != 1.0);
                c.key["nproc"] = nproc;
                c.key["parallel"] = f.parallel;
              }
              c.nproc = nproc;
              c.method_flags = method_flags;
              cells.push_back(std::move(c));
            }
          }
        }
      }
    }

  const bool score = f.metrics != "none";
  const auto metrics = score ? quality::parse_metrics(f.metrics) : quality::MetricList{};
  auto store = db::Store::open(f.db);
  // Dense references for fidelity, generated once per (model, size, prompt, seed, ...).
  std::map<std::string, at::Tensor> references;
  auto reference_for = [&](const Cell& c) {
    auto key = c.key;
    key.erase("method");
    auto [it, fresh] = references.emplace(key.dump(), at::Tensor());
    if (fresh) {
      GenerateOptions dense = c.o;
      dense.schedule.reset();
      dense.method.reset();
      it->second = generate(dense).video;
    }
    return it->second;
  };
  const auto env = profiler::environment(parse_device(f.device));
  auto versions = env;
  versions["astraea"] = ASTRAEA_VERSION;
  const ScratchDir scratch("astraea-sweep");
  Progress progress("sweep", static_cast<int64_t>(cells.size()));
  int64_t ran = 0, skipped = 0;
  for (size_t i = 0; i < cells.size(); ++i) {
    const auto& c = cells[i];
    const std::string key = c.key.dump();
    if (store.find_cell(key)) {
      ++skipped;
      progress.update(static_cast<int64_t>(i + 1), "skipped " + std::to_string(skipped) + " already stored");
      continue;
    }
    const auto r = c.nproc > 1 ? launched_generate(c, f, scratch.path()) : generate(c.o);
    std::optional<Scores> scores;
    if (score) {
      // A dense cell is its own reference: it gets the VBench-proxy scores only.
      const bool dense = c.o.method ? c.o.method->name() == "dense" : !c.o.schedule.has_value();
      const auto m = dense ? quality::without_reference(metrics) : metrics;
      at::Tensor reference = quality::needs_reference(m) ? reference_for(c) : at::Tensor();
      if (!m.empty())
        scores = score_video(r.video, reference.defined() ? &reference : nullptr, c.o.prompt, 16.0, m);
    }
    db::RunRecord run;
    run.kind = "sweep-cell";
    run.cell_key = key;
    auto config = c.key;
    config["command"] = command_line();
    config["step_actions"] = r.step_actions;  // what each step computed, for pricing it on another model
    if (!f.videos.empty()) {
      const auto path = (std::filesystem::path(f.videos) / ("cell-" + std::to_string(std::hash<std::string>{}(key)) +
                                                            ".safetensors")).string();
      write_safetensors(path, {{"video", DType::F32, r.video.sizes().vec(), r.video.data_ptr()}},
                        {{"model", r.config.name}, {"prompt", c.o.prompt}, {"seed", std::to_string(c.o.seed)}});
      config["video"] = path;
    }
    run.config_json = config.dump();
    run.git_revision = git_revision();
    run.seed = c.o.seed;
    run.device = env.value("device", f.device);
    run.versions_json = versions.dump();
    auto add = [&](const std::string& name, const std::string& unit, double v) {
      run.measurements.push_back({name, unit, v, std::nullopt, std::nullopt, "", "timer"});
    };
    add("sample_s", "s", r.sample_seconds);
    add("s_per_call", "s", r.sample_seconds / static_cast<double>(std::max<int64_t>(1, r.model_calls)));
    add("model_calls", "", static_cast<double>(r.model_calls));
    add("token_share", "", r.token_share);
    add("cache_bytes", "B", static_cast<double>(r.cache_bytes));
    add("skipped_steps", "", static_cast<double>(r.skipped_steps));
    if (scores) {
      for (auto& m : score_records(*scores)) run.measurements.push_back(std::move(m));
    }
    try {
      store.add_run(run);
      ++ran;
    } catch (const db::StoreError&) {
      if (!store.find_cell(key)) throw;  // not a cell another worker stored meanwhile
      ++skipped;
    }
    char extra[96];
    std::snprintf(extra, sizeof extra, "ran %lld, skipped %lld, last %.2f s", static_cast<long long>(ran),
                  static_cast<long long>(skipped), r.sample_seconds);
    std::string line = extra;
    if (const auto psnr = scores ? scores->value("psnr") : std::nullopt) {
      line += ", PSNR " + std::to_string(*psnr).substr(0, 5) + " dB";
    }
    progress.update(static_cast<int64_t>(i + 1), line);
  }
  progress.finish();
  std::printf("sweep: %zu cells, %lld run, %lld already in %s\n", cells.size(), static_cast<long long>(ran),
              static_cast<long long>(skipped), f.db.c_str());
}

}  // namespace

void register_sweep(CLI::App& app) {
  auto f = std::make_shared<SweepFlags>();
  auto* sub = app.add_subcommand("sweep", "Generate a grid of cells into the store, resuming where it stopped");
  sub->add_option("--model", f->models, "model preset (repeatable; default tiny)");
  sub->add_option("--weights", f->weights, "safetensors file or 'random' (default: the preset's shipped weights)");
  sub->add_option("--prompt", f->prompts, "prompt (repeatable)");
  sub->add_option("--prompts-file", f->prompts_file, "prompts, one per line ('#' starts a comment)");
  sub->add_option("--budgets", f->budgets, "uniform token budgets in [0, 1], comma-separated (1: dense)");
  sub->add_option("--schedules", f->schedules, "schedule files, comma-separated (docs/schedule.md)");
  sub->add_option("--method,--methods", f->methods,
                  "acceleration methods NAME[:KEY=VALUE,...] (repeatable; astraea-bench methods lists them); "
                  "KEY=A|B|C sweeps the knob, a curve per method");
  sub->add_option("--dense-steps", f->dense_steps, "with --budgets: dense steps first")->default_val(2);
  sub->add_option("--seeds", f->seeds, "noise seeds, comma-separated")->default_val("0");
  sub->add_option("--steps", f->steps, "sampling steps (default: the preset's)");
  sub->add_option("--guidance", f->guidance, "classifier-free guidance scale (default: the preset's)");
  add_size_flags(sub, f->frames, f->height, f->width);
  sub->add_option("--sizes", f->sizes, "several sizes instead: FxHxW,... (e.g. 8x32x48,16x64x64)");
  sub->add_option("--grid", f->grid,
                  "JSON file with any of models, sizes, prompts, methods, budgets, schedules, seeds, steps");
  add_device_flag(sub, f->device);
  sub->add_option("--nproc", f->nproc,
                  "world sizes, comma-separated: cells on P > 1 ranks run as launch --nproc P -- generate")
      ->default_val("1");
  add_parallel_flag(sub, f->parallel);
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  sub->add_option("--metrics", f->metrics,
                  "scores stored with each cell: psnr (against the dense cell of the same prompt and seed), "
                  "vbench-proxy, both or none")
      ->default_val("both");
  sub->add_option("--videos", f->videos, "also keep each cell's video (safetensors) in this folder");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
