// A model's parameters by its family's checkpoint key names: loaded from safetensors, or random.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace astraea {

/// What a parameter is, which decides its dtype on the device.
enum class ParamKind {
  kMatrix,  ///< linear/conv weights and biases: the compute dtype
  kFloat,   ///< norms, modulations and the timestep MLP: always float32, as Wan keeps them
};

struct ParamSpec {
  std::string name;  ///< Wan 2.1 key, e.g. "blocks.0.self_attn.q.weight"
  std::vector<int64_t> shape;
  ParamKind kind;
};

/// Every parameter a preset has, in checkpoint order.
std::vector<ParamSpec> parameter_specs(const ModelConfig& config);

/// Named tensors on one device.
using Weights = std::map<std::string, at::Tensor>;

/// Loads `path` (a checkpoint as io/checkpoint.h opens it: a safetensors file, a sharded index,
/// or a release folder; any float dtype) for `config`, converting to `dtype` on `device`.
/// Throws std::runtime_error naming the file (the shard) and tensor when one is missing,
/// unexpected, misshaped, or not a float, and naming image-to-video checkpoints as unsupported.
Weights load_weights(const std::string& path, const ModelConfig& config, const at::Device& device,
                     at::ScalarType dtype);

/// `preset` as the weights in `path` have it: with their absolute position features, or without
/// (the only part of a preset that a weights file decides). Throws std::runtime_error naming the
/// file when it cannot be read or its position weights are misshaped.
ModelConfig config_for_weights(const ModelConfig& preset, const std::string& path);

/// Seeded random weights with the scales of Wan's initialisation; identical for a seed on any device.
Weights random_weights(const ModelConfig& config, uint64_t seed, const at::Device& device,
                       at::ScalarType dtype);

/// Exactly the tensors EXPECTED names, each with its shape, taken from WEIGHTS (a state dict read
/// from SOURCE) to DTYPE on DEVICE. Throws std::runtime_error naming SOURCE and the tensor that is
/// missing, misshaped, not a float or unexpected; MODEL ("umT5", "the Wan VAE") says whose shape is
/// expected, and an unexpected tensor asks whether SOURCE is MODEL's file.
Weights take_weights(const std::map<std::string, std::vector<int64_t>>& expected, const Weights& weights,
                     const at::Device& device, at::ScalarType dtype, const std::string& source,
                     const std::string& model);

/// Writes `weights` as safetensors (to a temporary name, then renamed).
void save_weights(const std::string& path, const Weights& weights,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace astraea
