// Text conditioning: what the DiT's cross-attention reads for a prompt and for the null prompt.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

#include "model/denoiser.h"

namespace astraea {

/// Raw text-encoder outputs [tokens, text_dim] float32 on the CPU, before the DiT's text MLP.
struct TextContexts {
  at::Tensor cond;     ///< the prompt
  at::Tensor uncond;   ///< the null (negative) prompt, for classifier-free guidance
  std::string source;  ///< how they were made, for the run's provenance
};

/// Wan 2.1's official negative prompt (wan/configs/shared_config.py, sample_neg_prompt): what the
/// unconditional branch reads when a real release encodes the prompts and none is given.
extern const char* const kWanNegativePrompt;

/// Where the text comes from, beside the prompt.
struct TextOptions {
  std::string context_file;  ///< precomputed contexts (Wan presets)
  /// A Wan 2.1 release folder: its umT5 encoder (models_t5_umt5-xxl-enc-bf16.pth) and tokenizer
  /// (google/umt5-xxl/spiece.model) encode the prompts; "" for none.
  std::string release_dir;
  /// The unconditional prompt; none: the empty prompt, or kWanNegativePrompt with a release.
  std::optional<std::string> negative_prompt;
  std::string device = "cpu";  ///< where umT5 runs (bf16 on CUDA, fp32 on the CPU); freed after
};

/// Contexts for `prompt`:
/// - presets with their own text encoder (tiny): the prompt and the negative (default empty)
///   prompt, encoded;
/// - Wan presets: from `context_file` (safetensors: `context` [L, text_dim], optional
///   `negative_context`, else zeros); else from the release folder's umT5; else random, seeded
///   by the prompt.
/// Throws std::runtime_error naming the file, or std::invalid_argument naming the word, at fault.
TextContexts text_contexts(const Denoiser& model, const std::string& prompt, const TextOptions& options);

/// The release folder's umT5 files; throws std::runtime_error naming the one that is missing.
struct ReleaseTextFiles {
  std::string weights, tokenizer;
};
ReleaseTextFiles release_text_files(const std::string& dir);

}  // namespace astraea
