#include "model/weights.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>

#include <cmath>
#include <set>
#include <stdexcept>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/denoiser.h"

namespace astraea {
namespace {

at::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::F64:
      return at::kDouble;
    case DType::F32:
      return at::kFloat;
    case DType::F16:
      return at::kHalf;
    case DType::BF16:
      return at::kBFloat16;
    default:
      throw std::invalid_argument("not a float dtype");
  }
}

at::ScalarType device_dtype(ParamKind kind, at::ScalarType compute) {
  return kind == ParamKind::kFloat ? at::kFloat : compute;
}

}  // namespace

std::vector<ParamSpec> parameter_specs(const ModelConfig& config) {
  return model_family(config).parameter_specs(config);
}

namespace {

// Image-to-video checkpoints carry CLIP image features and their keys: refused by name, before
// their 36-channel patch embedding would fail as a misshaped tensor.
void refuse_image_to_video(const Checkpoint& file) {
  for (const TensorView* t : file.tensors()) {
    const auto& n = t->name;
    if (n.rfind("img_emb.", 0) == 0 || n.find(".k_img.") != std::string::npos ||
        n.find(".v_img.") != std::string::npos) {
      throw std::runtime_error(file.file_of(n) + ": an image-to-video checkpoint (tensor '" + n +
                               "'): Astraea runs Wan 2.1 text-to-video; image-to-video is not supported");
    }
  }
}

}  // namespace

Weights load_weights(const std::string& path, const ModelConfig& config, const at::Device& device,
                     at::ScalarType dtype) {
  const auto file = Checkpoint::open(path);
  refuse_image_to_video(file);
  Weights w;
  std::set<std::string> expected;
  for (const auto& spec : parameter_specs(config)) {
    expected.insert(spec.name);
    const TensorView* t = file.find(spec.name);
    if (!t) {
      throw std::runtime_error(file.path() + ": missing tensor '" + spec.name + "' (preset " + config.name +
                               " expects " + c10::str(at::IntArrayRef(spec.shape)) + ")");
    }
    const auto& where = file.file_of(spec.name);
    if (t->shape != spec.shape) {
      throw std::runtime_error(where + ": tensor '" + spec.name + "' has shape " +
                               c10::str(at::IntArrayRef(t->shape)) + ", preset " + config.name + " expects " +
                               c10::str(at::IntArrayRef(spec.shape)));
    }
    at::ScalarType src;
    try {
      src = to_scalar_type(t->dtype);
    } catch (const std::invalid_argument&) {
      throw std::runtime_error(where + ": tensor '" + spec.name + "' has dtype " +
                               std::string(dtype_name(t->dtype)) + ", expected a float dtype");
    }
    // from_blob over the mapped bytes; the copy to the device dtype owns its memory.
    auto view = at::from_blob(const_cast<std::byte*>(t->data), t->shape, at::TensorOptions().dtype(src));
    w[spec.name] = view.to(device, device_dtype(spec.kind, dtype), false, true);
  }
  for (const TensorView* t : file.tensors()) {
    if (!expected.count(t->name)) {
      throw std::runtime_error(file.file_of(t->name) + ": unexpected tensor '" + t->name + "' for preset " +
                               config.name + " (is this the right model preset?)");
    }
  }
  return w;
}

ModelConfig config_for_weights(const ModelConfig& preset, const std::string& path) {
  const auto file = Checkpoint::open(path);
  ModelConfig c = preset;
  c.position_octaves = 0;
  if (const TensorView* t = file.find("pos_embedding.weight")) {
    if (t->shape.size() != 2 || t->shape[0] != preset.dim || t->shape[1] % 6 != 0 || t->shape[1] == 0) {
      throw std::runtime_error(file.file_of(t->name) + ": tensor 'pos_embedding.weight' has shape " +
                               c10::str(at::IntArrayRef(t->shape)) + ", preset " + preset.name +
                               " expects [" + std::to_string(preset.dim) + ", 6 x octaves]");
    }
    c.position_octaves = t->shape[1] / 6;
  }
  return c;
}

Weights random_weights(const ModelConfig& config, uint64_t seed, const at::Device& device,
                       at::ScalarType dtype) {
  // Drawn on the CPU from one generator in a fixed order, so a seed means the same weights anywhere.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  Weights w;
  for (const auto& spec : parameter_specs(config)) {
    const auto& n = spec.name;
    auto ends_with = [&](const std::string& suffix) {
      return n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    at::Tensor t;
    if (ends_with("modulation")) {
      t = at::randn(spec.shape, gen) / std::sqrt(static_cast<double>(config.dim));
    } else if (ends_with("norm_q.weight") || ends_with("norm_k.weight") || ends_with("norm3.weight") ||
               ends_with("norm1.weight") || ends_with("norm2.weight") || ends_with("norm.weight")) {
      t = 1.0 + 0.05 * at::randn(spec.shape, gen);
    } else if (ends_with("embedding.weight") && n.rfind("text_encoder.", 0) == 0) {
      t = at::randn(spec.shape, gen);  // unit-variance word and position vectors
    } else if (ends_with(".bias")) {
      t = 0.02 * at::randn(spec.shape, gen);
    } else {
      int64_t fan_in = 1;
      for (size_t i = 1; i < spec.shape.size(); ++i) fan_in *= spec.shape[i];
      t = at::randn(spec.shape, gen) / std::sqrt(static_cast<double>(fan_in));
    }
    w[n] = t.to(device, device_dtype(spec.kind, dtype));
  }
  return w;
}

void save_weights(const std::string& path, const Weights& weights,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> host;  // keeps the CPU copies alive until written
  std::vector<TensorToWrite> out;
  for (const auto& [name, t] : weights) {
    auto c = t.to(at::kCPU).contiguous();
    DType d;
    switch (c.scalar_type()) {
      case at::kFloat:
        d = DType::F32;
        break;
      case at::kBFloat16:
        d = DType::BF16;
        break;
      case at::kHalf:
        d = DType::F16;
        break;
      case at::kDouble:
        d = DType::F64;
        break;
      case at::kLong:
        d = DType::I64;
        break;
      default:
        throw std::runtime_error(path + ": cannot save tensor '" + name + "' of dtype " +
                                 std::string(c.dtype().name()));
    }
    out.push_back({name, d, c.sizes().vec(), c.data_ptr()});
    host.push_back(std::move(c));
  }
  write_safetensors(path, out, metadata);
}

Weights take_weights(const std::map<std::string, std::vector<int64_t>>& expected, const Weights& weights,
                     const at::Device& device, at::ScalarType dtype, const std::string& source,
                     const std::string& model) {
  Weights taken;
  for (const auto& [name, shape] : expected) {
    const auto it = weights.find(name);
    if (it == weights.end())
      throw std::runtime_error(source + ": missing tensor '" + name + "' (" + model + " expects " +
                               c10::str(at::IntArrayRef(shape)) + ")");
    if (it->second.sizes() != at::IntArrayRef(shape))
      throw std::runtime_error(source + ": tensor '" + name + "' has shape " +
                               c10::str(at::IntArrayRef(it->second.sizes())) + ", " + model + " expects " +
                               c10::str(at::IntArrayRef(shape)));
    if (!at::isFloatingType(it->second.scalar_type()))
      throw std::runtime_error(source + ": tensor '" + name + "' is not a float tensor");
    taken[name] = it->second.to(device, dtype);
  }
  for (const auto& [name, t] : weights) {
    if (!expected.count(name))
      throw std::runtime_error(source + ": unexpected tensor '" + name + "' (is this " + model + "'s file?)");
  }
  return taken;
}

}  // namespace astraea
