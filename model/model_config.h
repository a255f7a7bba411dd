// Model presets: the shape of a Wan 2.1-class DiT, registered once in model_config.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace astraea {

/// The architecture of one DiT, in Wan 2.1's terms (wan/modules/model.py).
struct ModelConfig {
  std::string name;
  std::string family = "wan2.1";  ///< the model family that runs it (model/denoiser.h: model_families)
  int64_t dim = 0;                ///< hidden width
  int64_t ffn_dim = 0;            ///< feed-forward width
  int64_t heads = 0;              ///< attention heads; head_dim = dim / heads
  int64_t layers = 0;             ///< transformer blocks
  int64_t in_channels = 0, out_channels = 0;
  std::array<int64_t, 3> patch{1, 2, 2};  ///< (frames, height, width) of one token
  int64_t freq_dim = 256;                 ///< sinusoidal timestep embedding width
  int64_t text_dim = 4096;                ///< width of the text encoder's output
  int64_t text_len = 512;                 ///< context tokens (zero-padded)
  int64_t text_vocab = 0;  ///< word ids of the preset's own text encoder (0: none; Wan reads umT5 output)
  /// The words of that encoder, sorted: embedding rows 1..N (row 0 is padding). The trained weights
  /// fix them, so they are the model's data; shapes_world_test checks the shapes grammar uses these.
  std::vector<std::string> vocabulary;
  double eps = 1e-6;
  /// Absolute positions (0: none; Wan's are rotary only, so relative): the sine and cosine of each
  /// token's frame, row and column, normalised to (0, 1), at this many octaves, mapped to `dim` by
  /// "pos_embedding.weight" and added to the patch embedding. Normalised, they mean the same at any
  /// video size. They let a model say where things are at the first steps, when its input is noise.
  int64_t position_octaves = 0;
  bool pixel_space = false;  ///< true: channels are RGB in [-1, 1]; false: VAE latents
  /// Wan's video VAE compresses time 4x and space 8x; pixel-space models compress nothing.
  int64_t vae_time_stride = 4, vae_space_stride = 8;

  // Sampling defaults (flags override them).
  int64_t default_frames = 81, default_height = 480, default_width = 832;
  int64_t default_steps = 50;
  double default_guidance = 5.0;
  double default_shift = 5.0;
  std::string default_sampler = "unipc";  ///< "unipc" (Wan 2.1's official default) or "euler"
  std::string shipped_weights;  ///< path under assets/ or empty
  std::string description;

  int64_t head_dim() const { return dim / heads; }
  /// Parameter count of the DiT (text encoder excluded).
  int64_t parameter_count() const;
};

/// The latent (or pixel) grid a request maps to, in tokens per axis.
struct VideoShape {
  int64_t frames = 0, height = 0, width = 0;   ///< output video, in pixels/frames
  int64_t grid_f = 0, grid_h = 0, grid_w = 0;  ///< tokens per axis
  int64_t channels = 0;                        ///< model input channels
  int64_t latent_f = 0, latent_h = 0, latent_w = 0;
  int64_t tokens() const { return grid_f * grid_h * grid_w; }
};

/// A video size in frames and pixels.
struct VideoSize {
  int64_t frames = 0, height = 0, width = 0;
};

/// Parses "FRAMESxHEIGHTxWIDTH" (e.g. 16x64x64), each at least 1; throws std::invalid_argument
/// naming `what` (a flag, or a flag and its item).
VideoSize parse_video_size(const std::string& text, const std::string& what);

/// Maps a video size to the model's grid; throws std::invalid_argument naming the flag that
/// does not fit the VAE stride or the patch size.
VideoShape video_shape(const ModelConfig& config, int64_t frames, int64_t height, int64_t width);

/// The preset called `name`; throws std::invalid_argument listing the known presets.
const ModelConfig& model_preset(const std::string& name);
/// Every registered preset, in registration order.
const std::vector<ModelConfig>& model_presets();

}  // namespace astraea
