// astraea-bench train: trains a preset on the shapes world, writes its weights and a JSON record
// of the run, then measures prompt adherence on fresh prompts.
#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/progress.h"
#include "apps/provenance.h"
#include "engine/generate.h"
#include "io/atomic_file.h"
#include "shapes/prompt_adherence.h"
#include "shapes/shapes_world.h"
#include "shapes/train.h"

namespace astraea::app {
namespace {

struct TrainFlags {
  TrainOptions o;
  std::string out = "assets/tiny.safetensors", sizes = "8x32x48:32,16x64x64:12,16x64x64:12";
  double minutes = 0;
  int64_t eval_prompts = 32;
  uint64_t eval_seed = 1000;
  std::string eval_guidance;  // "" = the preset's
  std::string eval_size = "16x64x64";
  bool eval_only = false;
};

std::string json_path_for(const std::string& weights) {
  const std::string ext = ".safetensors";
  const bool has_ext = weights.size() > ext.size() && ends_with(weights, ext);
  return (has_ext ? weights.substr(0, weights.size() - ext.size()) : weights) + ".json";
}

nlohmann::json agreement_json(const shapes::Agreement& a) {
  return {{"clips", a.clips}, {"objects", a.objects}, {"colour", a.colour}, {"shape", a.shape},
          {"motion", a.motion}, {"background", a.background}};
}

// A motion's name, or "not found" for MotionConfusion's last column.
std::string motion_column(int k) {
  return k == shapes::MotionConfusion::kNotFound ? "not found"
                                                 : shapes::motion_name(static_cast<shapes::Motion>(k));
}

nlohmann::json confusion_json(const shapes::MotionConfusion& c) {
  nlohmann::json found, by_count;
  for (int m = 0; m < shapes::MotionConfusion::kMotions; ++m) {
    nlohmann::json row = nlohmann::json::object();
    for (int k = 0; k <= shapes::MotionConfusion::kNotFound; ++k) {
      if (c.found[m][k]) row[motion_column(k)] = c.found[m][k];
    }
    found[motion_column(m)] = row;
  }
  for (int n = 1; n <= 2; ++n) {
    if (c.objects[n]) by_count[std::to_string(n)] = c.right_share(n);
  }
  return {{"motion_found", found}, {"motion_by_objects_per_clip", by_count}};
}

void print_confusion(const shapes::MotionConfusion& c) {
  std::printf("  %-16s", "prompted\\found");
  for (int k = 0; k <= shapes::MotionConfusion::kNotFound; ++k)
    std::printf(" %14s", motion_column(k).c_str());
  std::printf("\n");
  for (int m = 0; m < shapes::MotionConfusion::kMotions; ++m) {
    std::printf("  %-16s", motion_column(m).c_str());
    for (int k = 0; k <= shapes::MotionConfusion::kNotFound; ++k)
      std::printf(" %14lld", static_cast<long long>(c.found[m][k]));
    std::printf("\n");
  }
  for (int n = 1; n <= 2; ++n) {
    if (c.objects[n]) {
      std::printf("  motion right in clips of %d object%s: %.1f%% of %lld\n", n, n == 1 ? "" : "s",
                  100.0 * c.right_share(n), static_cast<long long>(c.objects[n]));
    }
  }
}

// The guidance scales of the adherence check: --eval-guidance, or the preset's.
std::vector<double> eval_scales(const TrainFlags& f) {
  if (f.eval_guidance.empty()) return {model_preset(f.o.model).default_guidance};
  return parse_number_list("--eval-guidance", f.eval_guidance, 1.0, 100.0);
}

// Prompt adherence of WEIGHTS on fresh prompts at --eval-size, at each guidance scale of
// f.eval_guidance; the records go under "adherence" (the first scale) and "adherence_by_guidance".
void measure_adherence(const TrainFlags& f, const std::string& weights, nlohmann::json& record) {
  const auto size = parse_video_size(f.eval_size, "--eval-size");
  GenerateOptions model;  // loaded once, for every scale and the direction probe
  model.model = f.o.model;
  model.weights = weights;
  model.device = f.o.device;
  const auto loaded = load_model(model);
  for (double g : eval_scales(f)) {
    shapes::AdherenceOptions a;
    a.model = f.o.model;
    a.weights = weights;
    a.loaded = loaded;
    a.prompts = f.eval_prompts;
    a.device = f.o.device;
    a.seed = f.eval_seed;
    a.guidance = g;
    a.frames = size.frames, a.height = size.height, a.width = size.width;
    Progress eval("adherence", a.prompts);
    shapes::MotionConfusion confusion;
    const auto agreement =
        shapes::prompt_adherence(a, [&](int64_t i, const std::string& prompt, const shapes::ClipVerdict& v) {
          confusion.add(shapes::parse_prompt(prompt), v);
          eval.update(i + 1);
        });
    eval.finish();
    auto entry = agreement_json(agreement);
    entry["size"] = f.eval_size;
    entry["seed"] = a.seed;
    entry["guidance"] = g;
    entry.update(confusion_json(confusion));
    if (!record.contains("adherence")) record["adherence"] = entry;
    record["adherence_by_guidance"].push_back(entry);
    std::printf("prompt adherence on %lld fresh prompts (seed %llu) at %s, guidance %g: colour %.1f%%, motion %.1f%%, "
                "shape %.1f%%, background %.1f%%\n",
                static_cast<long long>(a.prompts), static_cast<unsigned long long>(a.seed), f.eval_size.c_str(), g,
                100 * agreement.colour, 100 * agreement.motion, 100 * agreement.shape, 100 * agreement.background);
    print_confusion(confusion);
  }
  // Whether the model reads the sign of its direction words at all (docs/shapes.md).
  DirectionProbe probe;
  probe.frames = size.frames, probe.height = size.height, probe.width = size.width;
  const auto gap = reversed_prompt_gap(*loaded, probe);
  std::string line;
  for (size_t i = 0; i < gap.size(); ++i) {
    record["direction_gap"][std::to_string(probe.sigmas[i]).substr(0, 4)] = gap[i];
    char item[48];
    std::snprintf(item, sizeof item, "%s %.2f: %+.2f%%", i ? "," : "", probe.sigmas[i], 100 * gap[i]);
    line += item;
  }
  std::printf("loss under the time-reversed prompt over the own prompt's, %lld moving clips, at sigma%s\n",
              static_cast<long long>(probe.clips), line.c_str());
}

void run(TrainFlags f) {
  // The adherence check's flags are checked before any training, not after it.
  parse_video_size(f.eval_size, "--eval-size");
  eval_scales(f);
  if (f.eval_only) {
    // Only the adherence check, of --init's weights (default: the shipped ones); nothing is written.
    if (f.eval_prompts <= 0) throw UsageError("--eval-only needs --eval-prompts above 0");
    nlohmann::json record;
    measure_adherence(f, f.o.init, record);
    std::printf("%s\n", record.dump().c_str());
    return;
  }
  check_output_path("--out", f.out, {".safetensors"});
  f.o.sizes = parse_train_sizes(f.sizes, "--sizes");
  f.o.time_limit_s = f.minutes * 60.0;
  if (f.o.checkpoint_dir.empty()) f.o.checkpoint_dir = f.out + ".checkpoint";

  Progress progress("training", 1000);
  auto r = train(f.o, [&](const TrainProgress& p) {
    char extra[160];
    std::snprintf(extra, sizeof extra, "step %lld  loss %.4f  lr %.2e", static_cast<long long>(p.step), p.loss, p.lr);
    progress.update(static_cast<int64_t>(p.fraction * 1000), extra);
  });
  progress.finish();

  Weights out;
  for (const auto& [k, v] : r.weights) out[k] = v.to(at::kBFloat16);
  nlohmann::json record{{"model", f.o.model},          {"steps", r.steps},
                        {"resumed_at_step", r.resumed_at}, {"wall_s", r.wall_s},
                        {"card", r.device_name},        {"seed", f.o.seed},
                        {"data_seed", f.o.data_seed},   {"sizes", f.sizes}, {"init", f.o.init.empty() ? "random" : f.o.init},
                        {"lr", f.o.lr},                 {"warmup", f.o.warmup},
                        {"ema", f.o.ema},               {"null_prompt_prob", f.o.null_prompt_prob},
                        {"direction_contrast", f.o.direction_contrast}, {"contrast_margin", f.o.contrast_margin},
                        {"contrast_min_sigma", f.o.contrast_min_sigma},
                        {"position_octaves", r.position_octaves},
                        {"noise_shift", r.noise_shift},
                        {"schedule_steps", f.o.steps},  {"time_limit_s", f.o.time_limit_s}};
  // The loss curve, thinned to at most 20 points, plus its ends.
  auto& curve = record["loss_curve"];
  const size_t stride = std::max<size_t>(1, r.loss_curve.size() / 20);
  for (size_t i = 0; i < r.loss_curve.size(); i += stride) curve.push_back(r.loss_curve[i]);
  if (!r.loss_curve.empty()) {
    record["loss_first"] = r.loss_curve.front().second;
    record["loss_last"] = r.loss_curve.back().second;  // of the last interval, which may be a few steps
    record["loss_last_200_steps"] = loss_tail_mean(r.loss_curve, 200);
  }
  std::string breakdown;
  for (const auto& [phase, ms] : r.step_ms) {
    record["step_ms"][phase] = ms;
    char item[64];
    std::snprintf(item, sizeof item, " %s %.1f ms", phase.c_str(), ms);
    breakdown += item;
  }
  save_weights(f.out, out, {{"astraea_training", record.dump()}});
  std::printf("wrote %s (%lld steps, %.0f s on %s, final loss %.4f)\n", f.out.c_str(),
              static_cast<long long>(r.steps), r.wall_s, r.device_name.c_str(),
              r.loss_curve.empty() ? 0.0 : r.loss_curve.back().second);
  if (!breakdown.empty()) std::printf("a step, phase by phase (device waited for at each phase's end):%s\n", breakdown.c_str());

  if (f.eval_prompts > 0) measure_adherence(f, f.out, record);
  const std::string json = json_path_for(f.out);
  const std::string error = write_file_atomically(json, record.dump(2) + "\n");
  if (!error.empty()) throw std::runtime_error(json + ": " + error);
  std::printf("wrote %s\n", json.c_str());
}

}  // namespace

void register_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();
  auto* sub = app.add_subcommand("train", "Train a preset (tiny) on the shapes world");
  sub->add_option("--model", f->o.model, "preset to train")->default_val("tiny");
  sub->add_option("--out", f->out, "final weights (bf16 safetensors); a .json record goes beside them")
      ->default_val(f->out);
  sub->add_option("--checkpoint-dir", f->o.checkpoint_dir,
                  "checkpoints, and resume from the last one found here (default: OUT.checkpoint)");
  sub->add_option("--checkpoint-every", f->o.checkpoint_every, "steps between checkpoints")->default_val(500);
  sub->add_option("--steps", f->o.steps, "schedule length in steps")->default_val(2000);
  sub->add_option("--minutes", f->minutes, "also stop after this much training time; the schedule follows time")
      ->default_val(0);
  sub->add_option("--sizes", f->sizes, "clip sizes and batch sizes, cycled per step")->default_val(f->sizes);
  sub->add_option("--lr", f->o.lr, "peak learning rate (AdamW)")->default_val(f->o.lr);
  sub->add_option("--warmup", f->o.warmup, "warm-up steps")->default_val(f->o.warmup);
  sub->add_option("--weight-decay", f->o.weight_decay)->default_val(f->o.weight_decay);
  sub->add_option("--noise-shift", f->o.noise_shift,
                  "shift of the logit-normal noise levels (0: the preset's sampling shift, 1: unshifted)")
      ->default_val(f->o.noise_shift)
      ->check(CLI::Range(0.0, 100.0));
  sub->add_option("--direction-contrast", f->o.direction_contrast,
                  "weight of the hinge that asks a clip's time-reversed prompt to denoise it worse (0: off)")
      ->default_val(f->o.direction_contrast);
  sub->add_option("--contrast-margin", f->o.contrast_margin, "how much worse, as a share of the true prompt's loss")
      ->default_val(f->o.contrast_margin);
  sub->add_option("--contrast-min-sigma", f->o.contrast_min_sigma, "noise levels below this are left out of the contrast")
      ->default_val(f->o.contrast_min_sigma);
  sub->add_option("--position-octaves", f->o.position_octaves,
                  "octaves of absolute position features (0: none, rotary positions only; default: those of the "
                  "weights started from, else the preset's, " +
                      std::to_string(model_preset("tiny").position_octaves) + " for tiny)")
      ->check(CLI::Range(0, 16));
  sub->add_option("--ema", f->o.ema, "EMA decay of the weights (0: off)")->default_val(f->o.ema);
  sub->add_option("--seed", f->o.seed, "initial weights and noise")->default_val(0);
  sub->add_option("--init", f->o.init, "start from these weights (e.g. the shipped ones) instead of random ones");
  sub->add_option("--data-seed", f->o.data_seed, "training clips")->default_val(1);
  add_device_flag(sub, f->o.device);
  sub->add_option("--eval-prompts", f->eval_prompts, "fresh prompts for the adherence check (0: skip)")
      ->default_val(32);
  sub->add_option("--eval-seed", f->eval_seed, "seed of the adherence check's prompts and noise")->default_val(1000);
  sub->add_option("--eval-guidance", f->eval_guidance,
                  "guidance scales of the adherence check, comma-separated (default: the preset's)");
  sub->add_option("--eval-size", f->eval_size, "size of the adherence check, FRAMESxHEIGHTxWIDTH (the evaluation size)")
      ->default_val(f->eval_size);
  sub->add_flag("--eval-only", f->eval_only,
                "no training: check the adherence of --init's weights (default: the shipped ones)");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
