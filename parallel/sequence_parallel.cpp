#include "parallel/sequence_parallel.h"

#include <ATen/ATen.h>

#include <utility>

namespace astraea::parallel {
namespace {

class SequenceParallel final : public Denoiser {
 public:
  SequenceParallel(std::shared_ptr<const Denoiser> model, std::shared_ptr<const Collective> ulysses,
                   std::shared_ptr<const Collective> ring)
      : model_(std::move(model)), ulysses_(std::move(ulysses)), ring_(std::move(ring)) {
    split_.ulysses = ulysses_.get();
    split_.ring = ring_.get();
  }

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
    return model_->forward_sequence_parallel(latents, timesteps, contexts, split_);
  }
  at::Tensor forward_sequence_parallel(const at::Tensor& latents, const at::Tensor& timesteps,
                                       const at::Tensor& contexts,
                                       const SequenceSplit& split) const override {
    return model_->forward_sequence_parallel(latents, timesteps, contexts, split);
  }
  bool has_tokenwise() const override { return model_->has_tokenwise(); }
  at::Tensor forward_tokenwise(const at::Tensor& latents, double timestep, const at::Tensor& context,
                               double budget, const SelectionParams& selection,
                               TokenEngineState& state) const override {
    return model_->forward_tokenwise_sequence_parallel(latents, timestep, context, budget, selection, state,
                                                       split_);
  }
  at::Tensor forward_tokenwise_sequence_parallel(const at::Tensor& latents, double timestep,
                                                 const at::Tensor& context, double budget,
                                                 const SelectionParams& selection, TokenEngineState& state,
                                                 const SequenceSplit& split) const override {
    return model_->forward_tokenwise_sequence_parallel(latents, timestep, context, budget, selection, state,
                                                       split);
  }
  Weights state_dict() const override { return model_->state_dict(); }
  std::vector<at::Tensor> parameters() const override { return model_->parameters(); }

 private:
  std::shared_ptr<const Denoiser> model_;
  std::shared_ptr<const Collective> ulysses_, ring_;
  SequenceSplit split_;
};

}  // namespace

std::shared_ptr<const Denoiser> sequence_parallel(std::shared_ptr<const Denoiser> model,
                                                  std::shared_ptr<const Collective> ulysses,
                                                  std::shared_ptr<const Collective> ring) {
  return std::make_shared<const SequenceParallel>(std::move(model), std::move(ulysses), std::move(ring));
}

}  // namespace astraea::parallel
