// Text-to-video generation: model, text context, sampler and an acceleration method, on one device.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/accelerator.h"
#include "engine/schedule.h"
#include "model/attention.h"
#include "model/collective.h"
#include "model/model_config.h"
#include "model/wan/vae.h"

namespace astraea {

class Denoiser;

/// A file the checkout ships (RELATIVE to its root: weights, calibrations), looked up beside the
/// working directory, $ASTRAEA_SOURCE_DIR and the source tree this was built from; "" if none.
std::string shipped_file(const std::string& relative);

/// Parses --device ("cpu", "cuda", "cuda:N"); throws std::invalid_argument when this build or
/// machine cannot run it.
at::Device parse_device(const std::string& name);
/// Parses --dtype ("fp32", "bf16"; "" picks bf16 on CUDA, fp32 on the CPU).
at::ScalarType parse_dtype(const std::string& name, const at::Device& device);

/// Everything `astraea-bench generate` takes. Zero/empty fields take the preset's defaults.
struct GenerateOptions {
  std::string model = "tiny";
  std::string weights;  ///< "" = the preset's shipped weights; "random"; or a safetensors path
  uint64_t weights_seed = 0;
  std::string prompt, context_file;
  /// The unconditional branch's prompt; none: the empty prompt, or Wan's official negative prompt
  /// when a release folder's umT5 encodes (model/text_context.h).
  std::optional<std::string> negative_prompt;
  std::string text_device;  ///< where a release's umT5 runs; "" = `device`
  int64_t frames = 0, height = 0, width = 0, steps = 0;
  double guidance = -1, shift = 0;
  std::string sampler;  ///< "euler" or "unipc"; "" = the preset's
  uint64_t seed = 0;
  std::string device = "cpu", dtype;
  AttentionBackend attention = AttentionBackend::kAuto;
  std::optional<TokenBudgetSchedule> schedule;  ///< ASTRAEA's schedule (when no method is given)
  /// The acceleration method (engine/methods.h); none: ASTRAEA with `schedule`, else dense.
  std::shared_ptr<const engine::Accelerator> method;
  /// Latent models' decoder: "" (a release folder's Wan2.1_VAE.pth when `weights` is one, else
  /// none: latents out), "none", "random" (the release's size, seeded by weights_seed) or a .pth.
  std::string vae;
  VaeTiling vae_tiling;  ///< spatial tiles for decoding (default: none, as official)
  std::shared_ptr<const WanVae> loaded_vae;  ///< a decoder already loaded (skips `vae`)
  std::function<void(int64_t step, int64_t steps)> on_step;
  /// A model already loaded (its preset must be `model`, on `device`): weights, dtype and loading
  /// are skipped, so repeated runs (timing a schedule against dense) pay for the weights once.
  std::shared_ptr<const Denoiser> loaded;
  /// CFG parallelism: the group of 2 (ranks or halves) that splits the two guidance branches
  /// (engine::GuidedStep); null: both branches here.
  std::shared_ptr<const Collective> cfg_group;
};

/// The file `options` takes its weights from: --weights, or the preset's shipped file ("" when the
/// weights are random or the shipped file is not in this checkout).
std::string weights_file(const GenerateOptions& options);

/// Loads the model that `options` names (weights, device, dtype), for GenerateOptions::loaded.
std::shared_ptr<const Denoiser> load_model(const GenerateOptions& options);

/// The decoder `options` names (GenerateOptions::vae), or null for none. Throws
/// std::runtime_error naming the missing or bad file, FieldError naming --vae for a pixel-space model.
std::shared_ptr<const WanVae> load_vae(const GenerateOptions& options);

struct GenerateResult {
  ModelConfig config;
  VideoShape shape;
  at::Tensor video;    ///< pixel-space models: [F, H, W, 3] float32 in [0, 1], on the CPU
  at::Tensor latents;  ///< latent models: [C, F, H, W] float32, on the CPU; with a VAE, `video` too
  std::string text_source, weights_source, vae_source;
  double decode_seconds = 0;  ///< the VAE's decoding
  double text_seconds = 0;    ///< encoding the prompts (part of load_seconds)
  /// The most GPU memory held in tensors in each stage (0 on the CPU): text encoding (with the
  /// DiT loaded), sampling, decoding.
  int64_t text_peak_bytes = 0, sample_peak_bytes = 0, decode_peak_bytes = 0;
  int64_t steps = 0, model_calls = 0;
  double guidance = 0, shift = 0;
  std::string sampler;
  double load_seconds = 0, sample_seconds = 0;
  std::string method;            ///< the method's registered name
  nlohmann::json method_params;  ///< and its parameters
  double token_share = 1;        ///< block-token computations done, over a dense run's
  int64_t cache_bytes = 0;       ///< the token-wise engine's caches (both guidance branches)
  int64_t skipped_steps = 0;     ///< budget-0 steps
  nlohmann::json method_report;  ///< what the method reports of its branches (engine::GuidedStep::report)
  std::vector<std::string> step_actions;  ///< what each step computed (engine::GuidedStep::step_actions)
};

/// Runs one generation. Same options and seed, same output. Throws on bad input (the message
/// names the flag, file or tensor).
GenerateResult generate(const GenerateOptions& options);

}  // namespace astraea
