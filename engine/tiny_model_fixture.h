// For the engine's tests: the tiny preset with random weights on the CPU, a 64-token input and the
// embedded context of one prompt.
#pragma once

#include <ATen/ATen.h>

#include "model/denoiser.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace astraea {

struct TinyModelFixture {
  ModelConfig c = model_preset("tiny");
  std::unique_ptr<Denoiser> owned = make_denoiser(c, random_weights(c, 11, at::kCPU, at::kFloat), at::kFloat);
  const Denoiser& model = *owned;
  at::Tensor x = at::randn({3, 4, 16, 16});  // 4 x 4 x 4 = 64 tokens
  at::Tensor ctx = model.embed_context(model.encode_prompt("a red circle moving left on a gray background"));
  /// The empty prompt's context, for the unconditional branch.
  at::Tensor uncond() const { return model.embed_context(model.encode_prompt("")); }
};

}  // namespace astraea
