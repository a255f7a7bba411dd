#include "model/wan/vae.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/StringUtil.h>
#include <c10/util/accumulate.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "model/weights.h"

namespace astraea {

const float kWanVaeMean[16] = {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653,  -0.1517, 1.5508,
                               0.4134,  -0.0715, 0.5517,  -0.3632, -0.1922, -0.9497, 0.2503,  -0.2921};
const float kWanVaeStd[16] = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                              3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160};

namespace {

constexpr int64_t kCacheFrames = 2;  // vae.py's CACHE_T

std::string num(int64_t i) { return std::to_string(i); }

// One causal convolution's memory between chunks: its last input frames, or the upsampler's
// "Rep" mark (its first chunk passed through without a temporal convolution).
struct CacheEntry {
  at::Tensor frames;
  bool rep = false;
};

// The layers a stage holds, in the order vae.py's Encoder3d / Decoder3d build them.
struct Stage {
  std::vector<std::pair<int64_t, int64_t>> blocks;  // residual blocks: in, out channels
  std::string resample;                             // "", "downsample2d", ... as vae.py names the modes
};

std::vector<Stage> encoder_stages(const WanVaeConfig& c) {
  std::vector<Stage> stages;
  int64_t in = c.dim;
  for (size_t i = 0; i < c.dim_mult.size(); ++i) {
    Stage s;
    const int64_t out = c.dim * c.dim_mult[i];
    for (int64_t r = 0; r < c.res_blocks; ++r, in = out) s.blocks.push_back({in, out});
    if (i + 1 != c.dim_mult.size()) s.resample = c.temporal_down[i] ? "downsample3d" : "downsample2d";
    stages.push_back(s);
  }
  return stages;
}

std::vector<Stage> decoder_stages(const WanVaeConfig& c) {
  std::vector<int64_t> dims{c.dim * c.dim_mult.back()};
  for (auto it = c.dim_mult.rbegin(); it != c.dim_mult.rend(); ++it) dims.push_back(c.dim * *it);
  std::vector<Stage> stages;
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    Stage s;
    int64_t in = i > 0 ? dims[i] / 2 : dims[i];  // the upsampler before it halved the channels
    for (int64_t r = 0; r <= c.res_blocks; ++r, in = dims[i + 1]) s.blocks.push_back({in, dims[i + 1]});
    if (i + 2 != dims.size()) s.resample = c.temporal_down[c.temporal_down.size() - 1 - i] ? "upsample3d" : "upsample2d";
    stages.push_back(s);
  }
  return stages;
}

// The input's last two frames, which the next chunk's causal convolution sees before its own: a
// one-frame chunk takes the frame before it from E (zeros after the upsampler's "Rep" chunk).
at::Tensor last_frames(const at::Tensor& x, const CacheEntry& e) {
  const int64_t t = x.size(2);
  auto keep = x.narrow(2, std::max<int64_t>(0, t - kCacheFrames), std::min(t, kCacheFrames)).clone();
  if (keep.size(2) < 2 && e.rep) return at::cat({at::zeros_like(keep), keep}, 2);
  if (keep.size(2) < 2 && e.frames.defined()) return at::cat({e.frames.narrow(2, e.frames.size(2) - 1, 1), keep}, 2);
  return keep;
}

// The release's latent mean and 1 / std on DEVICE, shaped to broadcast over [1, 16, T, h, w].
std::pair<at::Tensor, at::Tensor> latent_stats(const at::Device& device) {
  const auto mean = at::tensor(at::ArrayRef<float>(kWanVaeMean, 16)).to(device).view({1, 16, 1, 1, 1});
  const auto inv_std = (1.0 / at::tensor(at::ArrayRef<float>(kWanVaeStd, 16))).to(device).view({1, 16, 1, 1, 1});
  return {mean, inv_std};
}

// One pass of the encoder or decoder over a chunk of frames, reading and updating the cache.
class Pass {
 public:
  Pass(const std::map<std::string, at::Tensor>& w, std::vector<CacheEntry>& cache) : w_(w), cache_(cache) {}

  // CausalConv3d: zero-pads time at the front only (2 p frames for padding p), less the cached frames.
  at::Tensor conv(const at::Tensor& x, const std::string& p, const at::Tensor& cached = {}) {
    const auto& weight = w_.at(p + ".weight");
    const int64_t pad = (weight.size(3) - 1) / 2, time_pad = weight.size(2) - 1;
    auto in = x;
    int64_t front = time_pad;
    if (cached.defined() && time_pad > 0) {
      in = at::cat({cached, in}, 2);
      front -= cached.size(2);
    }
    if (front > 0) in = at::constant_pad_nd(in, {0, 0, 0, 0, front, 0});
    return at::conv3d(in, weight, w_.at(p + ".bias"), 1, {0, pad, pad});
  }

  // A causal convolution that remembers its input's last two frames for the next chunk.
  at::Tensor cached_conv(const at::Tensor& x, const std::string& p) {
    auto& e = next();
    auto keep = last_frames(x, e);
    auto y = conv(x, p, e.frames);
    e.frames = keep;
    return y;
  }

  // RMS_norm: F.normalize over channels, times sqrt(channels) and gamma.
  at::Tensor norm(const at::Tensor& x, const std::string& p) const {
    const auto& gamma = w_.at(p + ".gamma");
    const auto unit = x / x.norm(2, {1}, true).clamp_min(1e-12);
    return unit * std::sqrt(static_cast<double>(gamma.size(0))) * gamma;
  }

  at::Tensor residual(const at::Tensor& x, const std::string& p, int64_t in, int64_t out) {
    const auto h = in != out ? conv(x, p + ".shortcut") : x;
    auto y = cached_conv(at::silu(norm(x, p + ".residual.0")), p + ".residual.2");
    y = cached_conv(at::silu(norm(y, p + ".residual.3")), p + ".residual.6");
    return y + h;
  }

  // Single-head self-attention over each frame's pixels.
  at::Tensor attention(const at::Tensor& x, const std::string& p) const {
    const int64_t b = x.size(0), c = x.size(1), t = x.size(2), h = x.size(3), wd = x.size(4);
    auto f = x.permute({0, 2, 1, 3, 4}).reshape({b * t, c, h, wd});
    f = norm(f, p + ".norm");
    const auto qkv = at::conv2d(f, w_.at(p + ".to_qkv.weight"), w_.at(p + ".to_qkv.bias"))
                         .reshape({b * t, 3 * c, h * wd})
                         .transpose(1, 2);  // [bt, hw, 3c]
    const auto parts = qkv.chunk(3, -1);
    const auto scores = at::matmul(parts[0], parts[1].transpose(1, 2)) / std::sqrt(static_cast<double>(c));
    auto o = at::matmul(at::softmax(scores, -1), parts[2]).transpose(1, 2).reshape({b * t, c, h, wd});
    o = at::conv2d(o, w_.at(p + ".proj.weight"), w_.at(p + ".proj.bias"));
    return o.reshape({b, t, c, h, wd}).permute({0, 2, 1, 3, 4}) + x;
  }

  at::Tensor resample(at::Tensor x, const std::string& p, const std::string& mode) {
    const int64_t b = x.size(0), c = x.size(1);
    if (mode == "upsample3d") {
      auto& e = next();
      if (!e.frames.defined() && !e.rep) {
        e.rep = true;  // the first chunk: its one frame stays one frame
      } else {
        const int64_t t = x.size(2);
        auto keep = last_frames(x, e);
        x = conv(x, p + ".time_conv", e.rep ? at::Tensor() : e.frames);
        e = {keep, false};
        // [b, 2c, t, h, w] -> each frame becomes two: [b, c, 2t, h, w].
        x = x.reshape({b, 2, c, t, x.size(3), x.size(4)}).permute({0, 2, 3, 1, 4, 5}).reshape({b, c, 2 * t, x.size(3), x.size(4)});
      }
    }
    const int64_t t = x.size(2);
    auto f = x.permute({0, 2, 1, 3, 4}).reshape({b * t, x.size(1), x.size(3), x.size(4)});
    if (mode.rfind("upsample", 0) == 0) {
      // Nearest-exact at 2x: each pixel becomes a 2x2 block.
      const int64_t n = f.size(0), ch = f.size(1), fh = f.size(2), fw = f.size(3);
      f = f.view({n, ch, fh, 1, fw, 1}).expand({n, ch, fh, 2, fw, 2}).reshape({n, ch, 2 * fh, 2 * fw});
      f = at::conv2d(f, w_.at(p + ".resample.1.weight"), w_.at(p + ".resample.1.bias"), 1, 1);
    } else {
      f = at::constant_pad_nd(f, {0, 1, 0, 1});
      f = at::conv2d(f, w_.at(p + ".resample.1.weight"), w_.at(p + ".resample.1.bias"), 2);
    }
    x = f.reshape({b, t, f.size(1), f.size(2), f.size(3)}).permute({0, 2, 1, 3, 4});
    if (mode == "downsample3d") {
      auto& e = next();
      if (!e.frames.defined()) {
        e.frames = x.clone();  // the first chunk: no temporal downsampling yet
      } else {
        const auto keep = x.narrow(2, x.size(2) - 1, 1).clone();
        const auto& weight = w_.at(p + ".time_conv.weight");
        x = at::conv3d(at::cat({e.frames.narrow(2, e.frames.size(2) - 1, 1), x}, 2), weight,
                       w_.at(p + ".time_conv.bias"), {2, 1, 1});
        e.frames = keep;
      }
    }
    return x;
  }

  at::Tensor stages(at::Tensor x, const std::string& p, const std::vector<Stage>& stages) {
    int64_t k = 0;
    for (const auto& s : stages) {
      for (const auto& [in, out] : s.blocks) x = residual(x, p + num(k++), in, out);
      if (!s.resample.empty()) x = resample(x, p + num(k++), s.resample);
    }
    return x;
  }

  at::Tensor middle(at::Tensor x, const std::string& p, int64_t dim) {
    x = residual(x, p + "middle.0", dim, dim);
    x = attention(x, p + "middle.1");
    return residual(x, p + "middle.2", dim, dim);
  }

  at::Tensor head(const at::Tensor& x, const std::string& p) {
    return cached_conv(at::silu(norm(x, p + "head.0")), p + "head.2");
  }

 private:
  CacheEntry& next() {
    if (index_ >= cache_.size()) cache_.resize(index_ + 1);
    return cache_[index_++];
  }
  const std::map<std::string, at::Tensor>& w_;
  std::vector<CacheEntry>& cache_;
  size_t index_ = 0;
};

void add_conv(std::map<std::string, std::vector<int64_t>>& e, const std::string& p, std::vector<int64_t> shape) {
  e[p + ".bias"] = {shape[0]};
  e[p + ".weight"] = std::move(shape);
}

void add_residual(std::map<std::string, std::vector<int64_t>>& e, const std::string& p, int64_t in, int64_t out) {
  e[p + ".residual.0.gamma"] = {in, 1, 1, 1};
  add_conv(e, p + ".residual.2", {out, in, 3, 3, 3});
  e[p + ".residual.3.gamma"] = {out, 1, 1, 1};
  add_conv(e, p + ".residual.6", {out, out, 3, 3, 3});
  if (in != out) add_conv(e, p + ".shortcut", {out, in, 1, 1, 1});
}

// HALF ("encoder." or "decoder."): its stages under STAGES_KEY, then its middle blocks.
void add_half(std::map<std::string, std::vector<int64_t>>& e, const std::string& half, const std::string& stages_key,
              const std::vector<Stage>& stages, int64_t middle) {
  const auto p = half + stages_key;
  int64_t k = 0;
  for (const auto& s : stages) {
    for (const auto& [in, out] : s.blocks) add_residual(e, p + num(k++), in, out);
    if (s.resample.empty()) continue;
    const int64_t c = s.blocks.back().second;
    const auto r = p + num(k++);
    const bool up = s.resample.rfind("upsample", 0) == 0;
    add_conv(e, r + ".resample.1", {up ? c / 2 : c, c, 3, 3});
    if (s.resample == "upsample3d") add_conv(e, r + ".time_conv", {2 * c, c, 3, 1, 1});
    if (s.resample == "downsample3d") add_conv(e, r + ".time_conv", {c, c, 3, 1, 1});
  }
  add_residual(e, half + "middle.0", middle, middle);
  e[half + "middle.1.norm.gamma"] = {middle, 1, 1};
  add_conv(e, half + "middle.1.to_qkv", {3 * middle, middle, 1, 1});
  add_conv(e, half + "middle.1.proj", {middle, middle, 1, 1});
  add_residual(e, half + "middle.2", middle, middle);
}

}  // namespace

std::string vae_tiling_error(const VaeTiling& t) {
  if (t.tile < 0 || t.overlap < 0 || (t.tile > 0 && t.overlap >= t.tile))
    return "VAE tiles of " + num(t.tile) + " latent pixels cannot overlap by " + num(t.overlap);
  return {};
}

WanVaeConfig wan_vae_config_of(const std::map<std::string, at::Tensor>& weights, const std::string& source) {
  auto size = [&](const std::string& name, int64_t dim) {
    const auto it = weights.find(name);
    if (it == weights.end() || it->second.dim() != 5)
      throw std::runtime_error(source + ": tensor '" + name + "' is missing or not 5-dimensional (is this the Wan VAE?)");
    return it->second.size(dim);
  };
  WanVaeConfig c;
  c.dim = size("encoder.conv1.weight", 0);
  c.z_dim = size("conv2.weight", 0);
  if (c.z_dim != 16)
    throw std::runtime_error(source + ": latent channels " + num(c.z_dim) +
                             ", but the Wan VAE's statistics are for 16 (tensor 'conv2.weight')");
  return c;
}

std::map<std::string, std::vector<int64_t>> wan_vae_shapes(const WanVaeConfig& c) {
  const int64_t top = c.dim * c.dim_mult.back();
  std::map<std::string, std::vector<int64_t>> e;
  add_conv(e, "encoder.conv1", {c.dim, 3, 3, 3, 3});
  add_half(e, "encoder.", "downsamples.", encoder_stages(c), top);
  e["encoder.head.0.gamma"] = {top, 1, 1, 1};
  add_conv(e, "encoder.head.2", {2 * c.z_dim, top, 3, 3, 3});
  add_conv(e, "conv1", {2 * c.z_dim, 2 * c.z_dim, 1, 1, 1});
  add_conv(e, "conv2", {c.z_dim, c.z_dim, 1, 1, 1});
  add_conv(e, "decoder.conv1", {top, c.z_dim, 3, 3, 3});
  add_half(e, "decoder.", "upsamples.", decoder_stages(c), top);
  const int64_t bottom = c.dim * c.dim_mult.front();
  e["decoder.head.0.gamma"] = {bottom, 1, 1, 1};
  add_conv(e, "decoder.head.2", {3, bottom, 3, 3, 3});
  return e;
}

std::map<std::string, at::Tensor> random_wan_vae_weights(const WanVaeConfig& config, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, shape] : wan_vae_shapes(config)) {
    const auto ends = [&](const std::string& tail) {
      return name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    };
    if (ends(".gamma")) {
      w[name] = at::ones(shape);
    } else if (ends(".bias")) {
      w[name] = at::zeros(shape);
    } else {
      const auto fan_in = static_cast<double>(c10::multiply_integers(shape.begin() + 1, shape.end()));
      w[name] = at::randn(shape, gen) / std::sqrt(fan_in);
    }
  }
  return w;
}

WanVae::WanVae(const WanVaeConfig& config, const std::map<std::string, at::Tensor>& weights, const at::Device& device,
               const std::string& source)
    : config_(config), device_(device) {
  weights_ = take_weights(wan_vae_shapes(config_), weights, device_, at::kFloat, source, "the Wan VAE");
}

at::Tensor WanVae::decode_whole(const at::Tensor& latents) const {
  const auto& c = config_;
  const auto [mean, inv_std] = latent_stats(device_);
  auto z = latents.to(device_, at::kFloat).unsqueeze(0) / inv_std + mean;  // as vae.py: z / (1 / std) + mean
  std::vector<CacheEntry> cache;
  const auto stages = decoder_stages(c);
  const auto x = Pass(weights_, cache).conv(z, "conv2");
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < x.size(2); ++i) {
    Pass pass(weights_, cache);
    auto y = pass.cached_conv(x.narrow(2, i, 1), "decoder.conv1");
    y = pass.middle(y, "decoder.", c.dim * c.dim_mult.back());
    y = pass.stages(y, "decoder.upsamples.", stages);
    out.push_back(pass.head(y, "decoder.").clamp(-1, 1).to(at::kCPU));
  }
  return at::cat(out, 2).squeeze(0);
}

at::Tensor WanVae::decode(const at::Tensor& latents, const VaeTiling& tiling) const {
  if (latents.dim() != 4 || latents.size(0) != config_.z_dim)
    throw std::invalid_argument("the Wan VAE decodes latents [" + num(config_.z_dim) + ", T, h, w], not " +
                                c10::str(latents.sizes()));
  at::NoGradGuard no_grad;
  const int64_t h = latents.size(2), w = latents.size(3);
  if (const auto why = vae_tiling_error(tiling); !why.empty()) throw std::invalid_argument(why);
  if (tiling.tile == 0 || (h <= tiling.tile && w <= tiling.tile)) return decode_whole(latents);
  // Tile starts along one side: every `tile - overlap`, the last one flush with the edge.
  auto starts = [&](int64_t n) {
    std::vector<int64_t> s{0};
    while (s.back() + tiling.tile < n) s.push_back(std::min(s.back() + tiling.tile - tiling.overlap, n - tiling.tile));
    return s;
  };
  // A tile's weight along one side: a ramp over the overlap where a neighbour shares it.
  auto ramp = [&](int64_t start, int64_t len, int64_t n) {
    auto r = at::ones({len * 8});
    const int64_t ov = tiling.overlap * 8;
    if (ov == 0) return r;
    const auto rise = (at::arange(ov, at::kFloat) + 0.5) / ov;
    if (start > 0) r.narrow(0, 0, ov).copy_(rise);
    if (start + len < n) r.narrow(0, len * 8 - ov, ov).mul_(rise.flip(0));
    return r;
  };
  at::Tensor sum, weight;
  for (int64_t y0 : starts(h)) {
    for (int64_t x0 : starts(w)) {
      const int64_t th = std::min(tiling.tile, h), tw = std::min(tiling.tile, w);
      const auto pixels = decode_whole(latents.narrow(2, y0, th).narrow(3, x0, tw));
      const auto m = ramp(y0, th, h).view({-1, 1}) * ramp(x0, tw, w).view({1, -1});
      if (!sum.defined()) {
        sum = at::zeros({3, pixels.size(1), h * 8, w * 8});
        weight = at::zeros({h * 8, w * 8});
      }
      sum.narrow(2, y0 * 8, th * 8).narrow(3, x0 * 8, tw * 8).add_(pixels * m);
      weight.narrow(0, y0 * 8, th * 8).narrow(1, x0 * 8, tw * 8).add_(m);
    }
  }
  return sum / weight;
}

at::Tensor WanVae::encode(const at::Tensor& video) const {
  const auto& c = config_;
  if (video.dim() != 4 || video.size(0) != 3 || (video.size(1) - 1) % 4 != 0 || video.size(2) % 8 != 0 ||
      video.size(3) % 8 != 0)
    throw std::invalid_argument("the Wan VAE encodes video [3, 1 + 4k, 8m, 8n], not " + c10::str(video.sizes()));
  at::NoGradGuard no_grad;
  const auto x = video.to(device_, at::kFloat).unsqueeze(0);
  std::vector<CacheEntry> cache;
  const auto stages = encoder_stages(c);
  std::vector<at::Tensor> out;
  for (int64_t start = 0; start < x.size(2); start += start == 0 ? 1 : 4) {
    Pass pass(weights_, cache);
    auto y = pass.cached_conv(x.narrow(2, start, start == 0 ? 1 : 4), "encoder.conv1");
    y = pass.stages(y, "encoder.downsamples.", stages);
    y = pass.middle(y, "encoder.", c.dim * c.dim_mult.back());
    out.push_back(pass.head(y, "encoder."));
  }
  const auto mu = Pass(weights_, cache).conv(at::cat(out, 2), "conv1").narrow(1, 0, c.z_dim);
  const auto [mean, inv_std] = latent_stats(device_);
  return ((mu - mean) * inv_std).squeeze(0).to(at::kCPU);
}

}  // namespace astraea
