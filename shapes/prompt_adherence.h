// Prompt adherence of a shapes-world model: generate fresh prompts, check each video against its prompt.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "model/denoiser.h"
#include "shapes/shapes_checker.h"

namespace astraea::shapes {

struct AdherenceOptions {
  std::string model = "tiny";
  std::string weights;  ///< "" = the preset's shipped weights
  int64_t prompts = 32;
  uint64_t seed = 1000;  ///< prompt and noise seeds derive from it; keep it away from training's
  int64_t frames = 16, height = 64, width = 64, steps = 0;
  double guidance = -1;
  std::string device = "cpu";
  /// The model of (model, weights, device), already loaded; null: loaded here.
  std::shared_ptr<const Denoiser> loaded;
};

/// Generates `prompts` random shapes-world prompts (dense sampling with guidance) and checks each
/// video with check_clip. `on_clip` sees each prompt and its verdict.
Agreement prompt_adherence(const AdherenceOptions& options,
                           const std::function<void(int64_t index, const std::string& prompt,
                                                    const ClipVerdict& verdict)>& on_clip = {});

}  // namespace astraea::shapes
