// The diffusion transformer of Wan 2.1 (wan/modules/model.py: WanModel), one sequence at a time.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

#include "core/attention.h"
#include "core/model_config.h"
#include "core/weights.h"

namespace astraea {

/// A DiT on one device: activations in `dtype` (bf16 on the GPU, float32 on the CPU), the
/// residual stream, norms, modulation and timestep embedding in float32, as Wan computes them.
class WanDiT {
 public:
  /// Takes the weights (the self- and cross-attention projections are fused and the originals dropped).
  WanDiT(ModelConfig config, Weights weights, at::ScalarType dtype);
  ~WanDiT();
  WanDiT(WanDiT&&) noexcept;

  /// Text context [L <= text_len, text_dim] -> embedded context [text_len, dim] (zero-padded,
  /// as Wan pads to 512 tokens before its text MLP). Constant over a generation: embed once.
  at::Tensor embed_context(const at::Tensor& text) const;

  /// One model call: velocity for `latents` [C, F, H, W] at `timestep` (0..1000), given an
  /// embedded context. Returns float32 [C, F, H, W].
  at::Tensor forward(const at::Tensor& latents, double timestep, const at::Tensor& context) const;

  const ModelConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const;

  /// Sinusoidal timestep embedding of Wan (cos half, then sin half), float32 [freq_dim].
  static at::Tensor timestep_embedding(int64_t freq_dim, double timestep);

 private:
  struct Block;
  ModelConfig config_;
  at::ScalarType dtype_;
  Weights embed_;  // patch, text, time and head parameters, by key
  std::vector<Block> blocks_;
  at::Tensor inv_freq_;
};

}  // namespace astraea
