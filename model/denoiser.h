// The model seam: one model call (latents, timestep, context -> prediction), whatever the family.
// Everything above model/ (engine, shapes, tuner, apps) holds a Denoiser and never names a
// concrete family; a family is a folder under model/ (model/wan/) plus a line in denoiser.cpp's
// table, chosen by ModelConfig::family.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "model/collective.h"
#include "model/model_config.h"
#include "model/stack_policy.h"
#include "model/token_cache.h"
#include "model/weights.h"

namespace astraea {

/// A diffusion transformer on one device, predicting the flow-matching velocity.
class Denoiser {
 public:
  virtual ~Denoiser() = default;

  virtual const ModelConfig& config() const = 0;
  /// The dtype of the matrix products (bf16 on the GPU, float32 on the CPU).
  virtual at::ScalarType dtype() const = 0;
  virtual at::Device device() const = 0;

  /// Whether the preset brings its own text encoder (tiny); Wan presets read umT5 output.
  virtual bool has_text_encoder() const = 0;
  /// Raw text context of one prompt: [tokens, text_dim] float32; the empty prompt gives
  /// [0, text_dim]. Throws std::invalid_argument naming an unknown word.
  virtual at::Tensor encode_prompt(const std::string& prompt) const = 0;
  /// The same for a batch, in one pass: [B, text_len, text_dim], each prompt's rows then zeros.
  virtual at::Tensor encode_prompts(const std::vector<std::string>& prompts) const = 0;
  /// Text context [L <= text_len, text_dim] (or [B, L, text_dim]) -> embedded context
  /// [text_len, dim] (or [B, ...]).
  virtual at::Tensor embed_context(const at::Tensor& text) const = 0;

  /// One model call: velocity for `latents` [C, F, H, W] at `timestep` (0..1000), given an
  /// embedded context [text_len, dim]. Returns float32 [C, F, H, W]. By default forward_batch on
  /// a batch of one.
  virtual at::Tensor forward(const at::Tensor& latents, double timestep, const at::Tensor& context) const;
  /// The same for a batch: latents [B, C, F, H, W], timesteps [B], contexts [B, text_len, dim].
  virtual at::Tensor forward_batch(const at::Tensor& latents, const at::Tensor& timesteps,
                                   const at::Tensor& contexts) const = 0;

  /// One model call on a batch whose tokens are split over ranks as SPLIT says (sequence
  /// parallelism): every rank passes the whole batch (as forward_batch takes it) and computes the
  /// blocks on its contiguous shard of the tokens; every rank gets the whole prediction. The token
  /// count must divide by split.size(), and the heads by the Ulysses degree (std::invalid_argument
  /// naming the numbers). Families without it throw std::logic_error naming the family.
  virtual at::Tensor forward_sequence_parallel(const at::Tensor& latents, const at::Tensor& timesteps,
                                               const at::Tensor& contexts, const SequenceSplit& split) const;

  /// Whether forward_tokenwise is implemented.
  virtual bool has_tokenwise() const { return false; }
  /// One model call with token-wise acceleration (one sequence): budget 1 computes every token
  /// and refreshes `state`; 0 returns the last output; between, each block computes the top
  /// ceil(budget * N / S) tokens of each of selection.segments = S equal runs of the tokens by
  /// `selection`'s score, and the rest keep their cached outputs. Families without it throw
  /// std::logic_error naming the family.
  virtual at::Tensor forward_tokenwise(const at::Tensor& latents, double timestep, const at::Tensor& context,
                                       double budget, const SelectionParams& selection,
                                       TokenEngineState& state) const;
  /// The same with the tokens split over ranks as in forward_sequence_parallel: each rank selects
  /// among its own shard (as if selection.segments were at least split.size(); it must be 1 or a
  /// multiple of it), keeps the caches of its shard only, and its selected queries attend to the
  /// keys and values of every token. Equals forward_tokenwise with segments = split.size().
  virtual at::Tensor forward_tokenwise_sequence_parallel(const at::Tensor& latents, double timestep,
                                                         const at::Tensor& context, double budget,
                                                         const SelectionParams& selection,
                                                         TokenEngineState& state,
                                                         const SequenceSplit& split) const;

  /// Whether forward_with_policy is implemented.
  virtual bool has_stack_policy() const { return false; }
  /// One model call (one sequence) that asks POLICY before each block whether to compute it or to
  /// stand in for the rest of the stack, and which attention outputs to reuse
  /// (model/stack_policy.h). Families without it throw std::logic_error naming the family.
  virtual at::Tensor forward_with_policy(const at::Tensor& latents, double timestep,
                                         const at::Tensor& context, StackPolicy& policy) const;

  /// The weights under the family's checkpoint key names (views of the model's tensors).
  virtual Weights state_dict() const = 0;
  /// Every trainable tensor, once.
  virtual std::vector<at::Tensor> parameters() const = 0;
};

/// A model family: its name (ModelConfig::family) and how to build one from its weights.
struct ModelFamily {
  std::string name;
  std::string description;
  /// Every parameter a preset of the family has, in checkpoint order (what weights files hold).
  std::vector<ParamSpec> (*parameter_specs)(const ModelConfig& config);
  std::unique_ptr<Denoiser> (*make)(ModelConfig config, Weights weights, at::ScalarType dtype);
};

/// Every registered family, in registration order.
const std::vector<ModelFamily>& model_families();
/// The family of `config`; throws a FieldError naming `family` when none has that name.
const ModelFamily& model_family(const ModelConfig& config);

/// The denoiser of `config`'s family with `weights` (as load_weights or random_weights give them),
/// computing in `dtype`.
std::unique_ptr<Denoiser> make_denoiser(const ModelConfig& config, Weights weights, at::ScalarType dtype);

}  // namespace astraea
