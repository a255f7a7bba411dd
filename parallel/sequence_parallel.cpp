#include "parallel/sequence_parallel.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace astraea::parallel {
namespace {

class SequenceParallel final : public Denoiser {
 public:
  SequenceParallel(std::shared_ptr<const Denoiser> model, std::shared_ptr<const Collective> group,
                   SequenceAttention how)
      : model_(std::move(model)), group_(std::move(group)), how_(how) {}

  const ModelConfig& config() const override { return model_->config(); }
  at::ScalarType dtype() const override { return model_->dtype(); }
  at::Device device() const override { return model_->device(); }
  bool has_text_encoder() const override { return model_->has_text_encoder(); }
  at::Tensor encode_prompt(const std::string& prompt) const override { return model_->encode_prompt(prompt); }
  at::Tensor encode_prompts(const std::vector<std::string>& prompts) const override {
    return model_->encode_prompts(prompts);
  }
  at::Tensor embed_context(const at::Tensor& text) const override { return model_->embed_context(text); }
  at::Tensor forward_batch(const at::Tensor& latents, const at::Tensor& timesteps,
                           const at::Tensor& contexts) const override {
    return model_->forward_sequence_parallel(latents, timesteps, contexts, *group_, how_);
  }
  at::Tensor forward_sequence_parallel(const at::Tensor& latents, const at::Tensor& timesteps,
                                       const at::Tensor& contexts, const Collective& group,
                                       SequenceAttention how) const override {
    return model_->forward_sequence_parallel(latents, timesteps, contexts, group, how);
  }
  at::Tensor forward_tokenwise(const at::Tensor&, double, const at::Tensor&, double, const SelectionParams&,
                               TokenEngineState&) const override {
    throw std::invalid_argument(
        "the token-wise forward does not run on " + std::to_string(group_->size()) +
        " ranks yet (sequence parallelism is dense only): use --method dense, or one rank");
  }
  Weights state_dict() const override { return model_->state_dict(); }
  std::vector<at::Tensor> parameters() const override { return model_->parameters(); }

 private:
  std::shared_ptr<const Denoiser> model_;
  std::shared_ptr<const Collective> group_;
  SequenceAttention how_;
};

}  // namespace

std::shared_ptr<const Denoiser> sequence_parallel(std::shared_ptr<const Denoiser> model,
                                                  std::shared_ptr<const Collective> group,
                                                  Denoiser::SequenceAttention how) {
  return std::make_shared<const SequenceParallel>(std::move(model), std::move(group), how);
}

}  // namespace astraea::parallel
