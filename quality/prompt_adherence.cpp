#include "quality/prompt_adherence.h"

#include <ATen/ATen.h>

#include <random>

#include "core/shapes_world.h"
#include "engine/generate.h"

namespace astraea::quality {

Agreement prompt_adherence(const AdherenceOptions& o,
                           const std::function<void(int64_t, const std::string&, const ClipVerdict&)>& on_clip) {
  Agreement agreement;
  std::mt19937_64 rng(o.seed);
  GenerateOptions g;
  g.model = o.model;
  g.weights = o.weights;
  g.frames = o.frames;
  g.height = o.height;
  g.width = o.width;
  g.steps = o.steps;
  g.guidance = o.guidance;
  g.device = o.device;
  g.loaded = o.loaded;
  if (o.prompts > 0 && !g.loaded) g.loaded = load_model(g);  // once, not per prompt
  for (int64_t i = 0; i < o.prompts; ++i) {
    const auto prompt = shapes::random_prompt(rng);
    g.prompt = shapes::to_text(prompt);
    g.seed = rng();
    const auto r = generate(g);
    const auto verdict = check_clip(r.video.data_ptr<float>(), static_cast<int>(r.video.size(0)),
                                    static_cast<int>(r.video.size(1)), static_cast<int>(r.video.size(2)), prompt);
    agreement.add(verdict);
    if (on_clip) on_clip(i, g.prompt, verdict);
  }
  return agreement;
}

}  // namespace astraea::quality
