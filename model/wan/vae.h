// Wan 2.1's video VAE (wan/modules/vae.py, WanVAE_): causal 3D convolutions that see only past
// frames, run one chunk of frames at a time with a cache of each convolution's last input frames,
// so a clip of any length decodes in the memory of one chunk. 8x spatial and 4x temporal
// compression: F = 1 + 4k frames <-> 1 + k latent frames, first frame on its own.
// Weights by the official checkpoint's keys (Wan2.1_VAE.pth). It runs in float32, as the
// official pipeline runs it.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace astraea {

struct WanVaeConfig {
  int64_t dim = 96, z_dim = 16;
  std::vector<int64_t> dim_mult{1, 2, 4, 4};
  int64_t res_blocks = 2;
  std::vector<bool> temporal_down{false, true, true};  ///< per downsampling stage; decoding mirrors it
};

/// The sizes WEIGHTS have (the release's: dim 96, z_dim 16; smaller ones in tests), read off the
/// encoder's first convolution and the latent projection. Throws std::runtime_error naming SOURCE
/// and the tensor it could not read a size from.
WanVaeConfig wan_vae_config_of(const std::map<std::string, at::Tensor>& weights, const std::string& source);

/// Every tensor a Wan VAE of CONFIG has, by the official keys, with its shape.
std::map<std::string, std::vector<int64_t>> wan_vae_shapes(const WanVaeConfig& config);

/// Seeded random weights of CONFIG's shapes (convolutions scaled by 1 / sqrt(fan-in), zero biases,
/// unit norms): for timing at full size without the release.
std::map<std::string, at::Tensor> random_wan_vae_weights(const WanVaeConfig& config, uint64_t seed);

/// Spatial tiles for decoding where one chunk's activations do not fit: TILE latent pixels a side
/// (0: no tiling), neighbours overlapping by OVERLAP latent pixels and blended linearly across it.
struct VaeTiling {
  int64_t tile = 0, overlap = 8;
};

/// Why TILING cannot decode ("" when it can): a negative size, or tiles that overlap by their
/// whole size or more.
std::string vae_tiling_error(const VaeTiling& tiling);

class WanVae {
 public:
  /// WEIGHTS by the official keys (encoder.*, decoder.*, conv1.*, conv2.*), any float dtype, kept
  /// on DEVICE in float32. Throws std::runtime_error naming SOURCE and the tensor that is missing,
  /// misshaped, not a float or unexpected.
  WanVae(const WanVaeConfig& config, const std::map<std::string, at::Tensor>& weights, const at::Device& device,
         const std::string& source);

  /// Latents as the DiT makes them (normalised by the release's per-channel mean and std), [z_dim,
  /// T, h, w] on any device -> video [3, 1 + 4 (T - 1), 8 h, 8 w] in [-1, 1], float32 on the CPU.
  /// Tiled as TILING says (the official decode is TILING's default: none).
  at::Tensor decode(const at::Tensor& latents, const VaeTiling& tiling = {}) const;

  /// Video [3, F, H, W] in [-1, 1] (F = 1 + 4k, H and W multiples of 8) -> the latents' mean,
  /// normalised, [z_dim, 1 + k, H / 8, W / 8], float32 on the CPU. Throws std::invalid_argument
  /// naming the size that does not fit.
  at::Tensor encode(const at::Tensor& video) const;

  const WanVaeConfig& config() const { return config_; }

 private:
  at::Tensor decode_whole(const at::Tensor& z) const;
  WanVaeConfig config_;
  at::Device device_;
  std::map<std::string, at::Tensor> weights_;
};

/// The release's per-channel latent statistics (z_dim 16), which `decode` undoes and `encode` applies.
extern const float kWanVaeMean[16];
extern const float kWanVaeStd[16];

}  // namespace astraea
