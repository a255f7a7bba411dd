// The diffusion transformer of Wan 2.1 (wan/modules/model.py: WanModel), and for presets that
// bring one, their own small text encoder: the "wan2.1" family of model/denoiser.h. Only model/
// names it; everything above holds a Denoiser.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "model/attention.h"
#include "model/denoiser.h"

namespace astraea {

struct RopeGrid;
class OpSequence;

/// A DiT on one device. Matrix products run in `dtype` (bf16 on the GPU, float32 on the CPU);
/// the residual stream, norms, modulation and timestep embedding in float32, as Wan computes
/// them. Weights stored wider than `dtype` are cast on the fly (mixed-precision training).
class WanDiT final : public Denoiser {
 public:
  /// Takes the weights (the self- and cross-attention projections are fused and the originals dropped).
  WanDiT(ModelConfig config, Weights weights, at::ScalarType dtype);
  ~WanDiT();
  WanDiT(WanDiT&&) noexcept;

  // The Denoiser calls (model/denoiser.h). The text context is zero-padded to text_len, as Wan pads
  // to 512 tokens before its text MLP; state_dict() keys are Wan 2.1's.
  at::Tensor encode_prompt(const std::string& prompt) const override;
  at::Tensor encode_prompts(const std::vector<std::string>& prompts) const override;
  bool has_text_encoder() const override;
  at::Tensor embed_context(const at::Tensor& text) const override;
  at::Tensor forward_batch(const at::Tensor& latents, const at::Tensor& timesteps,
                           const at::Tensor& contexts) const override;
  at::Tensor forward_tokenwise(const at::Tensor& latents, double timestep, const at::Tensor& context,
                               double budget, const SelectionParams& selection,
                               TokenEngineState& state) const override;
  at::Tensor forward_sequence_parallel(const at::Tensor& latents, const at::Tensor& timesteps,
                                       const at::Tensor& contexts, const SequenceSplit& split) const override;
  at::Tensor forward_tokenwise_sequence_parallel(const at::Tensor& latents, double timestep,
                                                 const at::Tensor& context, double budget,
                                                 const SelectionParams& selection, TokenEngineState& state,
                                                 const SequenceSplit& split) const override;
  bool has_tokenwise() const override { return true; }
  bool has_stack_policy() const override { return true; }
  at::Tensor forward_with_policy(const at::Tensor& latents, double timestep, const at::Tensor& context,
                                 StackPolicy& policy) const override;
  Weights state_dict() const override;
  std::vector<at::Tensor> parameters() const override;
  const ModelConfig& config() const override { return config_; }
  at::ScalarType dtype() const override { return dtype_; }
  at::Device device() const override;

  /// Absolute position features of a grid of gf x gh x gw tokens (ModelConfig::position_octaves):
  /// float32 [gf * gh * gw, 6 * octaves] on `device`, tokens in (frame, row, column) order; for each
  /// axis, coordinate u = (index + 0.5) / size, and for octave k: sin(2^k pi u), cos(2^k pi u).
  static at::Tensor position_features(int64_t gf, int64_t gh, int64_t gw, int64_t octaves,
                                      at::Device device = at::kCPU);
  /// Sinusoidal timestep embedding of Wan (cos half, then sin half), float32 [B, freq_dim].
  static at::Tensor timestep_embedding(int64_t freq_dim, const at::Tensor& timesteps);

 private:
  struct Block;
  struct Embedded;
  at::Tensor mat(const at::Tensor& w) const;  // w in the compute dtype
  Embedded embed_inputs(const at::Tensor& latents, const at::Tensor& timesteps) const;
  at::Tensor run_head(at::Tensor& x, const Embedded& in) const;
  // One block on all tokens; with `record`, also fills that block's token cache. With `split`, x
  // holds this rank's shard of the tokens (rope.positions says which) and self-attention runs
  // over every rank's (dit_parallel.cpp).
  void dense_block(const Block& b, at::Tensor& x, const at::Tensor& e0, const at::Tensor& contexts,
                   const RopeGrid& rope, BlockTokenCache* record, bool record_kv = false,
                   const SequenceSplit* split = nullptr, BlockReuse* reuse = nullptr) const;
  // One block on the selected tokens of one sequence, from its input `in` [N, D] (the previous block's
  // cache, in the cache dtype) into `cache.out`, where the rest keep their cached outputs. With
  // `split`, `in` is this rank's shard, and its selected queries attend to every rank's tokens.
  void sparse_block(const Block& b, const at::Tensor& in, const at::Tensor& e0, const at::Tensor& contexts,
                    const RopeGrid& rope, double budget, const SelectionParams& selection,
                    BlockTokenCache& cache, int64_t& computed, const SequenceSplit* split = nullptr) const;
  // forward_tokenwise, with the tokens split over `split`'s ranks when it is given.
  at::Tensor tokenwise(const at::Tensor& latents, double timestep, const at::Tensor& context, double budget,
                       const SelectionParams& selection, TokenEngineState& state,
                       const SequenceSplit* split) const;
  // Narrows the embedded tokens X [B, N, D] to this rank's shard under `split`, and sets ROPE's
  // positions to theirs (a std::invalid_argument naming the numbers when N or the heads do not
  // divide).
  void take_shard(at::Tensor& x, RopeGrid& rope, const SequenceSplit& split) const;
  // Both kinds of block after self-attention's residual: the cross-attention of `xc`'s rows over
  // the text `context`, added to `stream` in place, then the feed-forward of `stream` normalised
  // with `shift` and `scale`. Returns the feed-forward output for the caller's last gated update.
  // With REUSE (PAB), the cross-attention output is its kept one, or is kept there.
  at::Tensor cross_attention_ffn(const Block& b, at::Tensor& stream, const at::Tensor& xc,
                                 const at::Tensor& context, const at::Tensor& shift, const at::Tensor& scale,
                                 OpSequence& op, BlockReuse* reuse = nullptr) const;
  ModelConfig config_;
  at::ScalarType dtype_;
  Weights embed_;    // patch, text, time and head parameters, by Wan key
  Weights encoder_;  // the preset's own text encoder, by key (empty for Wan presets)
  std::vector<Block> blocks_;
  at::Tensor inv_freq_;
  at::Tensor sketch_proj_;  // [kSketchDim, dim] bf16, fixed: row j is a projection direction
};

/// Every parameter of a Wan preset (and of its own text encoder, if it has one), in checkpoint order.
std::vector<ParamSpec> wan_parameter_specs(const ModelConfig& config);

}  // namespace astraea
