// astraea-bench generate: one text-to-video generation to an MP4 or safetensors file.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "apps/commands.h"
#include "apps/launched.h"
#include "apps/progress.h"
#include "apps/scoring.h"
#include "engine/generate.h"
#include "engine/schedule.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "io/video_io.h"

namespace astraea::app {
namespace {

struct GenerateFlags {
  GenerateOptions o;
  std::string out, attention = "auto", schedule, metrics, reference, method, parallel = "auto", result_json;
  double budget = std::nan("");  // unset
  int64_t dense_steps = 2, vae_tile = 0;
  SelectionParams selection;
};

void write_result(const GenerateResult& r, const GenerateFlags& f) {
  if (ends_with(f.out, ".mp4")) {
    if (!r.video.defined()) {
      throw UsageError("--out " + f.out + ": " + r.config.name +
                       " makes latents and no VAE decodes them (pass --vae or --weights RELEASE_FOLDER); write "
                       ".safetensors instead");
    }
    write_mp4(f.out, r.video.data_ptr<float>(), r.video.size(0), r.video.size(1), r.video.size(2), 16.0);
    return;
  }
  const auto& t = r.video.defined() ? r.video : r.latents;
  std::map<std::string, std::string> meta{{"model", r.config.name},
                                          {"prompt", f.o.prompt},
                                          {"seed", std::to_string(f.o.seed)},
                                          {"steps", std::to_string(r.steps)},
                                          {"guidance", std::to_string(r.guidance)},
                                          {"shift", std::to_string(r.shift)},
                                          {"sampler", r.sampler},
                                          {"weights", r.weights_source},
                                          {"text", r.text_source}};
  if (!r.vae_source.empty()) meta["vae"] = r.vae_source;
  write_safetensors(f.out, {{r.video.defined() ? "video" : "latents", DType::F32, t.sizes().vec(), t.data_ptr()}},
                    meta);
}

void run(const GenerateFlags& f) {
  check_output_path("--out", f.out, {".mp4", ".safetensors"});  // before any work
  std::optional<quality::MetricList> metrics;
  if (!f.metrics.empty()) metrics = quality::parse_metrics(f.metrics);
  if (metrics && quality::needs_reference(*metrics) && f.reference.empty())
    throw UsageError("--metrics " + f.metrics + " needs --reference FILE");
  at::Tensor reference;  // read before the slow part, so that a bad file fails at once
  if (metrics && quality::needs_reference(*metrics))
    reference = load_video("--reference", f.reference, nullptr);
  GenerateOptions o = f.o;
  o.vae_tiling = {f.vae_tile, f.vae_tile / 4};
  o.attention = parse_attention_backend(f.attention);
  const auto& preset = model_preset(o.model);
  const int64_t steps = o.steps ? o.steps : preset.default_steps;
  if (!f.schedule.empty()) o.schedule = read_schedule(f.schedule, preset.name, steps);
  if (!std::isnan(f.budget)) {
    o.schedule = uniform_schedule(preset.name, steps, f.budget, f.dense_steps);
    o.schedule->selection = f.selection;
  }
  if (!f.method.empty()) o.method = method_flag(f.method, preset.name, steps);
  // Launched as one of several ranks (launch, torchrun): every model call splits its tokens over
  // them; rank 0 alone reports and writes.
  const auto launched =
      join_launched(f.parallel, preset, o.guidance >= 0 ? o.guidance : preset.default_guidance, o.device);
  const auto& env = launched.env;
  if (launched.world) {
    o.loaded = launched.split(load_model(o));
    o.cfg_group = launched.groups.cfg;
  }
  Progress progress("sampling", steps);
  o.on_step = [&](int64_t step, int64_t) {
    if (env.rank == 0) progress.update(step + 1);
  };
  const auto r = generate(o);
  if (env.rank != 0) return;
  progress.finish();
  write_result(r, f);
  if (!f.result_json.empty()) {  // what sweep reads of a cell it launched on several ranks
    const nlohmann::json j{{"sample_seconds", r.sample_seconds},
                           {"load_seconds", r.load_seconds},
                           {"decode_seconds", r.decode_seconds},
                           {"text_seconds", r.text_seconds},
                           {"peak_bytes", {{"text", r.text_peak_bytes}, {"sample", r.sample_peak_bytes},
                                           {"decode", r.decode_peak_bytes}}},
                           {"model_calls", r.model_calls},
                           {"token_share", r.token_share},
                           {"cache_bytes", r.cache_bytes},
                           {"skipped_steps", r.skipped_steps},
                           {"step_actions", r.step_actions},
                           {"method", r.method},
                           {"method_params", r.method_params},
                           {"method_report", r.method_report},
                           {"sampler", r.sampler}};
    const auto error = write_file_atomically(f.result_json, j.dump(2) + "\n");
    if (!error.empty()) throw UsageError("--result-json " + f.result_json + ": " + error);
  }
  std::printf("wrote %s: %s, %lldx%lldx%lld (%lld tokens), %lld steps, %lld model calls, %.2f s sampling (%.3f s/call), %.2f s loading\n",
              f.out.c_str(), r.config.name.c_str(), static_cast<long long>(r.shape.frames),
              static_cast<long long>(r.shape.height), static_cast<long long>(r.shape.width),
              static_cast<long long>(r.shape.tokens()), static_cast<long long>(r.steps),
              static_cast<long long>(r.model_calls), r.sample_seconds,
              r.sample_seconds / static_cast<double>(std::max<int64_t>(1, r.model_calls)), r.load_seconds);
  std::printf("  weights: %s\n  text: %s\n", r.weights_source.c_str(), r.text_source.c_str());
  if (!r.vae_source.empty()) std::printf("  vae: %s, %.2f s decoding\n", r.vae_source.c_str(), r.decode_seconds);
  if (r.sample_peak_bytes > 0) {
    std::printf("  stages: text %.2f s (peak %.2f GB), sampling %.2f s (peak %.2f GB), decoding %.2f s (peak %.2f GB)\n",
                r.text_seconds, r.text_peak_bytes / 1e9, r.sample_seconds, r.sample_peak_bytes / 1e9,
                r.decode_seconds, r.decode_peak_bytes / 1e9);
  }
  if (r.method != "dense") {
    std::printf("  method: %s %s\n", r.method.c_str(), r.method_params.dump().c_str());
    std::printf("  token-wise: %.1f%% of a dense run's block-token computations, %lld skipped steps, caches %.1f MB\n",
                100 * r.token_share, static_cast<long long>(r.skipped_steps), r.cache_bytes / 1e6);
  }
  if (metrics) {
    if (!r.video.defined()) throw UsageError("--metrics: " + r.config.name + " makes latents, which cannot be scored");
    std::fflush(stdout);
    print_scores(std::cout, score_video(r.video, reference.defined() ? &reference : nullptr, o.prompt, 16.0, *metrics),
                 false);
  }
}

}  // namespace

void register_generate(CLI::App& app) {
  auto flags = std::make_shared<GenerateFlags>();
  auto& o = flags->o;
  auto* sub = app.add_subcommand("generate", "Generate one video from a prompt");
  std::string presets;
  for (const auto& p : model_presets()) presets += "\n    " + p.name + ": " + p.description;
  sub->footer("Presets:" + presets +
              "\n\ntiny sizes: CPU size 8x32x48 (768 tokens, the default); evaluation size "
              "--frames 16 --height 64 --width 64 (4096 tokens).");
  add_model_flags(sub, o.model, o.weights, o.frames, o.height, o.width,
                  "safetensors file with Wan 2.1 key names, a sharded index, a Wan 2.1 release folder (its "
                  "umT5 then encodes "
                  "the prompts), or 'random' (default: the preset's shipped weights)");
  sub->add_option("--weights-seed", o.weights_seed, "seed of --weights random")->default_val(0);
  auto* prompt = sub->add_option("--prompt", o.prompt, "text prompt");
  sub->add_option("--context", o.context_file,
                  "safetensors with precomputed text-encoder output 'context' [L, text_dim] (Wan presets)")
      ->excludes(prompt);
  sub->add_option(
      "--negative-prompt", o.negative_prompt,
      "the unconditional branch's prompt (default: empty; Wan's official one when --weights is a release "
      "folder)");
  sub->add_option(
      "--text-device", o.text_device,
      "where a release folder's umT5 encodes the prompts: cpu, cuda or cuda:N (default: --device)");
  sub->add_option("--vae", o.vae,
                  "latent models' decoder: a Wan2.1_VAE.pth, 'random' (full size) or 'none' (default: the "
                  "release folder's when --weights is one, else none)");
  sub->add_option("--vae-tile", flags->vae_tile,
                  "decode in spatial tiles of this many latent pixels a side, overlapping by a quarter "
                  "(default 0: whole frames, as official)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--steps", o.steps, "sampling steps");
  sub->add_option("--guidance", o.guidance, "classifier-free guidance scale (1 = unguided)");
  sub->add_option("--shift", o.shift, "flow-matching timestep shift");
  sub->add_option("--sampler", o.sampler,
                  "euler or unipc (default: the preset's; Wan's is unipc, as official)");
  sub->add_option("--seed", o.seed, "noise seed")->default_val(0);
  add_device_flag(sub, o.device);
  sub->add_option("--dtype", o.dtype, "fp32 or bf16 (default: bf16 on CUDA, fp32 on the CPU)");
  sub->add_option("--attention", flags->attention, "auto, math, flash, cudnn or efficient")->default_val("auto");
  auto* method = sub->add_option(
      "--method", flags->method,
      "acceleration method NAME[:KEY=VALUE,...] (astraea-bench methods lists them; default dense)");
  auto* schedule =
      sub->add_option("--schedule", flags->schedule,
                      "token-budget schedule (JSON, docs/schedule.md): one budget per step (ASTRAEA)")
          ->excludes(method);
  sub->add_option("--budget", flags->budget,
                  "the same token budget in [0, 1] at every step after --dense-steps (ASTRAEA)")
      ->excludes(schedule)
      ->excludes(method);
  sub->add_option("--dense-steps", flags->dense_steps, "dense steps before --budget applies")->default_val(2);
  sub->add_option("--tile", flags->selection.tile, "with --budget: select runs of this many tokens")->default_val(1);
  sub->add_option("--min-frame-share", flags->selection.min_frame_share,
                  "with --budget: every frame keeps at least this share of its tokens fresh")
      ->default_val(0);
  sub->add_flag("--reuse-kv", flags->selection.reuse_kv,
                "with --budget: unselected tokens keep cached keys and values (more memory, fewer FLOPs)");
  sub->add_option("--metrics", flags->metrics,
                  "also score the video: metric names, comma-separated (psnr needs --reference), or both");
  add_parallel_flag(sub, flags->parallel);
  sub->add_option("--reference", flags->reference, "the dense reference video, for --metrics psnr");
  sub->add_option("--out", flags->out, "output: .mp4 (pixel-space models, or latent ones with a VAE) or .safetensors")->required();
  sub->add_option("--result-json", flags->result_json,
                  "also write the run's numbers (times, token share) as JSON");
  on_run(sub, [flags] { run(*flags); });
}

}  // namespace astraea::app
