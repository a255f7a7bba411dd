#include "tuner/evaluation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/generate.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "shapes/semantic_check.h"

namespace astraea::tuner {
namespace {

GenerateOptions options_for(const RunnerSetup& s, const std::string& prompt, uint64_t seed,
                            const std::string& device) {
  GenerateOptions o;
  o.model = s.model;
  o.weights = s.weights;
  o.prompt = prompt;
  o.frames = s.frames;
  o.height = s.height;
  o.width = s.width;
  o.steps = s.steps;
  o.seed = seed;
  o.device = device;
  return o;
}

GenerateOptions with_budgets(GenerateOptions o, const Genome& genome, int64_t segments) {
  TokenBudgetSchedule schedule;
  schedule.model = o.model;
  schedule.budgets = genome;
  schedule.selection.segments = segments;
  o.schedule = schedule;
  return o;
}

// Writes VIDEO as SAVE_DIR/FILE in our safetensors layout, with its prompt and seed.
void save_video(const std::string& save_dir, const std::string& file, const at::Tensor& video,
                const std::string& prompt, uint64_t seed) {
  const auto t = video.contiguous();
  write_safetensors(save_dir + "/" + file, {{"video", DType::F32, t.sizes().vec(), t.data_ptr()}},
                    {{"prompt", prompt}, {"seed", std::to_string(seed)}});
}

}  // namespace

double Quality::of(const std::string& metric) const {
  const auto it = headline.find(metric);
  return it == headline.end() ? 0.0 : it->second;
}

double fitness_of(const Quality& q, const quality::MetricList& metrics) {
  return quality::combine(metrics, q.headline);
}

ScheduleRunner::ScheduleRunner(RunnerSetup setup) : setup_(std::move(setup)) {
  if (setup_.devices.empty()) throw std::invalid_argument("a schedule runner needs at least one device");
  if (setup_.seeds.empty()) throw std::invalid_argument("a schedule runner needs at least one seed");
  for (const auto& d : setup_.devices) {
    const auto o = options_for(setup_, "", 0, d);
    models_.push_back(load_model(o));
    vaes_.push_back(load_vae(o));
  }
}

ScheduleRunner::~ScheduleRunner() = default;

void ScheduleRunner::make_references(const std::vector<std::string>& prompts) {
  for (const auto& prompt : prompts) {
    for (uint64_t seed : setup_.seeds) {
      auto& ref = references_[{prompt, seed}];
      if (ref.defined()) continue;
      auto o = options_for(setup_, prompt, seed, setup_.devices.front());
      o.loaded = models_.front();
      o.loaded_vae = vaes_.front();
      ref = generate(o).video;
    }
  }
}

const at::Tensor& ScheduleRunner::reference(const std::string& prompt, uint64_t seed) const {
  const auto it = references_.find({prompt, seed});
  if (it == references_.end())
    throw std::logic_error("no dense reference made for '" + prompt + "', seed " + std::to_string(seed));
  return it->second;
}

Quality ScheduleRunner::quality(const Genome& genome, const std::vector<std::string>& prompts, size_t device,
                                const quality::MetricList& metrics, const KeepVideo& keep) const {
  Quality q;
  for (const auto* m : metrics) q.headline[m->name] = 0;
  for (const auto& prompt : prompts) {
    // Parsed once a prompt.
    const auto semantic = quality::judges_prompt(metrics) ? shapes::semantic_check(prompt) : nullptr;
    for (uint64_t seed : setup_.seeds) {
      const auto& ref = reference(prompt, seed);
      auto o =
          with_budgets(options_for(setup_, prompt, seed, setup_.devices.at(device)), genome, setup_.segments);
      o.loaded = models_.at(device);
      o.loaded_vae = vaes_.at(device);
      const auto video = generate(o).video;
      if (keep) keep(prompt, seed, video);
      const auto s = quality::score(metrics, {&video, &ref, semantic.get(), 16.0});
      for (const auto* m : metrics) q.headline[m->name] += *s.headline(*m);
    }
  }
  const double n = static_cast<double>(prompts.size() * setup_.seeds.size());
  for (auto& [name, sum] : q.headline) sum /= n;
  return q;
}

double ScheduleRunner::dense_vbench(const std::vector<std::string>& prompts) const {
  const auto& vbench = quality::metric("vbench-proxy");
  double total = 0;
  for (const auto& p : prompts) {
    const auto semantic = shapes::semantic_check(p);
    for (uint64_t seed : setup_.seeds)
      total +=
          *quality::score({&vbench}, {&reference(p, seed), nullptr, semantic.get(), 16.0}).headline(vbench);
  }
  return total / static_cast<double>(prompts.size() * setup_.seeds.size());
}

Genome equal_cost_uniform(const Genome& genome, const LatencyModel& latency, int64_t dense_steps) {
  Genome uniform(genome.size(), 1.0);
  const auto k = std::min(static_cast<size_t>(std::max<int64_t>(0, dense_steps)), genome.size());
  const double rest = static_cast<double>(uniform.size() - k);
  if (rest <= 0) return uniform;
  const double per_step = (latency.cost_ms(genome) - static_cast<double>(k) * latency.step_ms(1.0)) / rest;
  const double u = std::clamp((per_step - latency.intercept_ms()) / latency.slope_ms(), 0.01, 1.0);
  std::fill(uniform.begin() + static_cast<std::ptrdiff_t>(k), uniform.end(), u);
  return uniform;
}

HeldOutCheck check_held_out(ScheduleRunner& runner, const Genome& best, const Genome& uniform,
                            const std::vector<std::string>& held_out, const std::string& save_dir) {
  const auto& s = runner.setup();
  runner.make_references(held_out);
  HeldOutCheck check;
  // Both metrics where this build has optical flow and the videos are large enough; without flow
  // (the GPU host has no OpenCV) PSNR alone, and the saved videos can be scored elsewhere.
  const auto& vbench = quality::metric("vbench-proxy");
  check.vbench = vbench.applies(s.frames, s.height, s.width);
  quality::MetricList both{&quality::metric("psnr")};
  if (check.vbench) both.push_back(&vbench);
  nlohmann::json index = nlohmann::json::array();
  auto keeper = [&](const std::string& kind) -> ScheduleRunner::KeepVideo {
    if (save_dir.empty()) return {};
    return [&, kind](const std::string& prompt, uint64_t seed, const at::Tensor& video) {
      const auto i =
          static_cast<size_t>(std::find(held_out.begin(), held_out.end(), prompt) - held_out.begin());
      const std::string stem = "heldout" + std::to_string(i) + "_seed" + std::to_string(seed) + "_";
      save_video(save_dir, stem + kind + ".safetensors", video, prompt, seed);
      if (kind == "tuned")
        save_video(save_dir, stem + "dense.safetensors", runner.reference(prompt, seed), prompt, seed);
      index.push_back({{"prompt", prompt},
                       {"seed", seed},
                       {"kind", kind},
                       {"video", stem + kind + ".safetensors"},
                       {"reference", stem + "dense.safetensors"}});
    };
  };
  if (!save_dir.empty()) std::filesystem::create_directories(save_dir);
  check.tuned = runner.quality(best, held_out, 0, both, keeper("tuned"));
  check.uniform = runner.quality(uniform, held_out, 0, both, keeper("uniform"));
  if (!save_dir.empty()) {
    const std::string path = save_dir + "/index.json";
    const std::string error = write_file_atomically(path, index.dump(2) + "\n");
    if (!error.empty()) throw std::runtime_error(path + ": " + error);
  }
  if (check.vbench) check.dense_vbench = runner.dense_vbench(held_out);
  return check;
}

MeasuredSpeed measure_speed(const RunnerSetup& setup, const Genome& tuned, const Genome& uniform, int repeats,
                            uint64_t seed) {
  GenerateOptions o = options_for(setup, "", 0, setup.devices.front());
  o.loaded = load_model(o);
  o.loaded_vae = load_vae(o);
  {  // Warm-up: one call at every budget the runs will use (attention plans are built per shape).
    Genome warm{1.0};
    for (const Genome* g : {&tuned, &uniform})
      for (double b : *g)
        if (b > 0 && std::find(warm.begin(), warm.end(), b) == warm.end()) warm.push_back(b);
    GenerateOptions w = with_budgets(o, warm, setup.segments);
    w.steps = static_cast<int64_t>(warm.size());
    generate(w);
  }
  // Whole sampling runs, interleaved in a shuffled order each round, so that a load change on a
  // shared machine falls on all three alike; a fixed count of rounds, since each is a whole run.
  MeasuredSpeed speed;
  profiler::TimingOptions rounds;
  rounds.warmup = 0;
  rounds.min_reps = rounds.max_reps = repeats;
  rounds.noise = speed.noise_target;  // whole runs of a few repeats: 5% is what a quiet CPU gives
  auto sampled = [](GenerateOptions run) -> profiler::Sampler {
    return [run] { return 1e3 * generate(run).sample_seconds; };
  };
  const auto timed =
      profiler::measure_interleaved({sampled(o), sampled(with_budgets(o, tuned, setup.segments)),
                                     sampled(with_budgets(o, uniform, setup.segments))},
                                    rounds, seed);
  speed.dense = timed[0], speed.tuned = timed[1], speed.uniform = timed[2];
  for (auto* t : {&speed.dense, &speed.tuned, &speed.uniform}) t->clock = "wall, synchronized";
  return speed;
}

}  // namespace astraea::tuner
