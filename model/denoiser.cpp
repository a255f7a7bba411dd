#include "model/denoiser.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "io/field_error.h"
#include "model/wan/dit.h"

namespace astraea {
namespace {

std::unique_ptr<Denoiser> make_wan(ModelConfig config, Weights weights, at::ScalarType dtype) {
  return std::make_unique<WanDiT>(std::move(config), std::move(weights), dtype);
}

}  // namespace

const std::vector<ModelFamily>& model_families() {
  // One line per family: adding a family is a folder under model/ and a line here.
  static const std::vector<ModelFamily> all = {
      {"wan2.1", "Wan 2.1's DiT (wan/modules/model.py), with a token-wise forward", &wan_parameter_specs,
       &make_wan},
  };
  return all;
}

at::Tensor Denoiser::forward(const at::Tensor& latents, double timestep, const at::Tensor& context) const {
  TORCH_CHECK(latents.dim() == 4, "latents must be [C, F, H, W], got ", latents.sizes());
  auto t = at::full({1}, timestep, at::TensorOptions().dtype(at::kDouble).device(device()));
  return forward_batch(latents.unsqueeze(0), t, context.unsqueeze(0)).squeeze(0);
}

at::Tensor Denoiser::forward_tokenwise(const at::Tensor&, double, const at::Tensor&, double,
                                       const SelectionParams&, TokenEngineState&) const {
  throw std::logic_error("model family '" + config().family + "' has no token-wise forward");
}

at::Tensor Denoiser::forward_sequence_parallel(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                               const SequenceSplit&) const {
  throw std::logic_error("model family '" + config().family + "' has no sequence-parallel forward");
}

at::Tensor Denoiser::forward_tokenwise_sequence_parallel(const at::Tensor&, double, const at::Tensor&, double,
                                                         const SelectionParams&, TokenEngineState&,
                                                         const SequenceSplit&) const {
  throw std::logic_error("model family '" + config().family +
                         "' has no sequence-parallel token-wise forward");
}

at::Tensor Denoiser::forward_with_policy(const at::Tensor&, double, const at::Tensor&, StackPolicy&) const {
  throw std::logic_error("model family '" + config().family + "' has no forward for step-caching methods");
}

const ModelFamily& model_family(const ModelConfig& config) {
  std::string known;
  for (const auto& f : model_families()) {
    if (f.name == config.family) return f;
    known += (known.empty() ? "" : ", ") + f.name;
  }
  throw FieldError("family", "'" + config.family + "' of model '" + config.name + "' is not one of " + known);
}

std::unique_ptr<Denoiser> make_denoiser(const ModelConfig& config, Weights weights, at::ScalarType dtype) {
  return model_family(config).make(config, std::move(weights), dtype);
}

}  // namespace astraea
