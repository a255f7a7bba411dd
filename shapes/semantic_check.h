// The shapes world's semantic dimensions for VBench-proxy: a prompt's colour, shape, motion and
// background, checked on the video by the shapes checker.
#pragma once

#include <memory>
#include <string>

#include "quality/video_metrics.h"
#include "shapes/shapes_world.h"

namespace astraea::shapes {

/// The check of PROMPT's clip, for quality::vbench_proxy and quality::score.
std::unique_ptr<quality::SemanticCheck> semantic_check(const Prompt& prompt);
/// The same from the prompt's text; nullptr for an empty one. Throws PromptError naming a bad word.
std::unique_ptr<quality::SemanticCheck> semantic_check(const std::string& prompt);

}  // namespace astraea::shapes
