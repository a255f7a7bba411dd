// Text conditioning: what the DiT's cross-attention reads for a prompt and for the null prompt.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "model/denoiser.h"

namespace astraea {

/// Raw text-encoder outputs [tokens, text_dim] float32 on the CPU, before the DiT's text MLP.
struct TextContexts {
  at::Tensor cond;     ///< the prompt
  at::Tensor uncond;   ///< the null (negative) prompt, for classifier-free guidance
  std::string source;  ///< how they were made, for the run's provenance
};

/// Contexts for `prompt`:
/// - presets with their own text encoder (tiny): the prompt and the empty prompt, encoded;
/// - Wan presets: from `context_file` (safetensors: `context` [L, text_dim], optional
///   `negative_context`, else zeros), or random, seeded by the prompt, when no file is given.
/// Throws std::runtime_error naming the file, or std::invalid_argument naming the word, at fault.
TextContexts text_contexts(const Denoiser& model, const std::string& prompt, const std::string& context_file);

}  // namespace astraea
