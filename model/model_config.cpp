#include "model/model_config.h"

#include <cstdio>
#include <stdexcept>

#include "io/field_error.h"

namespace astraea {
namespace {

ModelConfig wan(std::string name, int64_t dim, int64_t ffn, int64_t heads, int64_t layers) {
  ModelConfig c;
  c.name = std::move(name);
  c.dim = dim;
  c.ffn_dim = ffn;
  c.heads = heads;
  c.layers = layers;
  c.in_channels = c.out_channels = 16;
  c.description = "Wan 2.1 text-to-video DiT, " + std::to_string(layers) + " layers, dim " +
                  std::to_string(dim) + " (weights: Wan's safetensors, or random)";
  return c;
}

ModelConfig tiny() {
  ModelConfig c;
  c.name = "tiny";
  c.dim = 192;
  c.ffn_dim = 768;
  c.heads = 3;  // head_dim 64
  c.layers = 6;
  c.in_channels = c.out_channels = 3;
  c.patch = {1, 4, 4};
  c.freq_dim = 128;
  c.position_octaves = 4;  // the shipped weights have them (docs/shapes.md)
  c.text_dim = 128;
  c.text_len = 24;
  c.vocabulary = {"a",       "an",       "and",    "background", "black", "blue",   "brown",    "checkered",
                  "circle",  "cyan",     "down",   "gray",       "green", "left",   "moving",   "navy",
                  "on",      "orange",   "purple", "red",        "right", "square", "standing", "still",
                  "striped", "triangle", "up",     "white",      "yellow"};
  c.text_vocab = static_cast<int64_t>(c.vocabulary.size()) + 1;  // id 0 is padding
  c.pixel_space = true;
  c.vae_time_stride = 1;
  c.vae_space_stride = 1;
  // CPU size: 8 x 32 x 48 pixels = 8 x 8 x 12 = 768 tokens. Evaluation size: 16 x 64 x 64 = 4096.
  c.default_frames = 8;
  c.default_height = 32;
  c.default_width = 48;
  c.default_steps = 30;
  c.default_guidance = 4.0;
  c.default_shift = 3.0;
  c.default_sampler = "euler";  // what it was trained and tuned with
  c.shipped_weights = "assets/tiny.safetensors";
  c.description = "pixel-space RGB DiT for the CPU, " + std::to_string(c.layers) + " layers, dim " +
                  std::to_string(c.dim);
  return c;
}

std::vector<ModelConfig> make_presets() {
  // One line per preset: adding a model is adding a line here.
  return {wan("wan2.1-1.3b", 1536, 8960, 12, 30), wan("wan2.1-14b", 5120, 13824, 40, 40), tiny()};
}

}  // namespace

int64_t ModelConfig::parameter_count() const {
  const int64_t d = dim, patch_in = in_channels * patch[0] * patch[1] * patch[2];
  const int64_t attn = 4 * (d * d + d) + 2 * d;  // q, k, v, o with biases; q and k RMS norms
  const int64_t block = 2 * attn + 2 * d /* norm3 */ + 2 * d * ffn_dim + ffn_dim + d + 6 * d;
  const int64_t embed =
      patch_in * d + d + text_dim * d + d + d * d + d + freq_dim * d + d + d * d + d + d * 6 * d + 6 * d;
  const int64_t head = d * out_channels * patch[0] * patch[1] * patch[2] +
                       out_channels * patch[0] * patch[1] * patch[2] + 2 * d;
  const int64_t t = text_dim;  // the tiny text encoder: embeddings, one transformer layer, final norm
  const int64_t encoder = text_vocab == 0
                              ? 0
                              : text_vocab * t + text_len * t + 2 * t + (3 * t * t + 3 * t) + (t * t + t) +
                                    2 * t + (4 * t * t + 4 * t) + (4 * t * t + t) + 2 * t;
  const int64_t position = position_octaves * 6 * d;
  return embed + position + layers * block + head + encoder;
}

const std::vector<ModelConfig>& model_presets() {
  static const std::vector<ModelConfig> presets = make_presets();
  return presets;
}

const ModelConfig& model_preset(const std::string& name) {
  std::string known;
  for (const auto& p : model_presets()) {
    if (p.name == name) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  throw std::invalid_argument("unknown model preset '" + name + "' (known: " + known + ")");
}

VideoSize parse_video_size(const std::string& text, const std::string& what) {
  long long f, h, w;
  char tail;
  if (std::sscanf(text.c_str(), "%lldx%lldx%lld%c", &f, &h, &w, &tail) != 3 || f < 1 || h < 1 || w < 1) {
    throw std::invalid_argument(what + " '" + text + "' is not FRAMESxHEIGHTxWIDTH (e.g. 16x64x64)");
  }
  return {f, h, w};
}

VideoShape video_shape(const ModelConfig& c, int64_t frames, int64_t height, int64_t width) {
  auto need = [](bool ok, const std::vector<std::string>& fields, const std::string& what) {
    if (!ok) throw FieldError(fields, what);
  };
  need(frames > 0 && height > 0 && width > 0, {"frames", "height", "width"},
       "{0}, {1} and {2} must be positive");
  VideoShape s;
  s.frames = frames;
  s.height = height;
  s.width = width;
  s.channels = c.in_channels;
  // Wan's causal VAE keeps the first frame and compresses the rest 4x: 81 frames -> 21 latents.
  need((frames - 1) % c.vae_time_stride == 0, {"frames"},
       "{0} " + std::to_string(frames) + " must be 1 + a multiple of " + std::to_string(c.vae_time_stride) +
           " for " + c.name);
  s.latent_f = c.vae_time_stride == 1 ? frames : 1 + (frames - 1) / c.vae_time_stride;
  const int64_t space = c.vae_space_stride * c.patch[1];
  need(
      height % (c.vae_space_stride * c.patch[1]) == 0, {"height"},
      "{0} " + std::to_string(height) + " must be a multiple of " + std::to_string(space) + " for " + c.name);
  need(width % (c.vae_space_stride * c.patch[2]) == 0, {"width"},
       "{0} " + std::to_string(width) + " must be a multiple of " +
           std::to_string(c.vae_space_stride * c.patch[2]) + " for " + c.name);
  s.latent_h = height / c.vae_space_stride;
  s.latent_w = width / c.vae_space_stride;
  need(s.latent_f % c.patch[0] == 0, {"frames"}, "{0} does not fit the temporal patch of " + c.name);
  s.grid_f = s.latent_f / c.patch[0];
  s.grid_h = s.latent_h / c.patch[1];
  s.grid_w = s.latent_w / c.patch[2];
  return s;
}

}  // namespace astraea
