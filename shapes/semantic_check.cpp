#include "shapes/semantic_check.h"

#include "shapes/shapes_checker.h"

namespace astraea::shapes {
namespace {

class PromptCheck : public quality::SemanticCheck {
 public:
  explicit PromptCheck(Prompt prompt) : prompt_(std::move(prompt)) {}
  std::map<std::string, double> agreement(const float* rgb, int frames, int height,
                                          int width) const override {
    shapes::Agreement a;
    a.add(shapes::check_clip(rgb, frames, height, width, prompt_));
    return {{"colour", a.colour}, {"shape", a.shape}, {"motion", a.motion}, {"background", a.background}};
  }

 private:
  Prompt prompt_;
};

}  // namespace

std::unique_ptr<quality::SemanticCheck> semantic_check(const Prompt& prompt) {
  return std::make_unique<PromptCheck>(prompt);
}

std::unique_ptr<quality::SemanticCheck> semantic_check(const std::string& prompt) {
  if (prompt.empty()) return nullptr;
  return semantic_check(parse_prompt(prompt));
}

}  // namespace astraea::shapes
