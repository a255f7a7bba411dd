#include "shapes/prompt_adherence.h"

#include <ATen/ATen.h>

#include <random>

#include "engine/generate.h"
#include "shapes/shapes_world.h"

namespace astraea::shapes {

Agreement prompt_adherence(
    const AdherenceOptions& o,
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
    const auto verdict =
        check_clip(r.video.data_ptr<float>(), static_cast<int>(r.video.size(0)),
                   static_cast<int>(r.video.size(1)), static_cast<int>(r.video.size(2)), prompt);
    agreement.add(verdict);
    if (on_clip) on_clip(i, g.prompt, verdict);
  }
  return agreement;
}

// The rates of shapes_checker.h: verdicts added up over clips.
void Agreement::add(const ClipVerdict& verdict) {
  auto fold = [](double rate, int count, bool ok) { return (rate * count + ok) / (count + 1); };
  background = fold(background, clips, verdict.background_ok);
  ++clips;
  for (const ObjectVerdict& v : verdict.objects) {
    colour = fold(colour, objects, v.colour_ok);
    shape = fold(shape, objects, v.shape_ok);
    motion = fold(motion, objects, v.motion_ok);
    ++objects;
  }
}

void MotionConfusion::add(const shapes::Prompt& prompt, const ClipVerdict& verdict) {
  const size_t n = std::min(prompt.objects.size(), verdict.objects.size());
  const size_t count = std::min<size_t>(prompt.objects.size(), 2);
  for (size_t i = 0; i < n; ++i) {
    const ObjectVerdict& v = verdict.objects[i];
    ++found[static_cast<int>(prompt.objects[i].motion)]
           [v.found ? static_cast<int>(v.found_motion) : kNotFound];
    right[count] += v.motion_ok;
    ++objects[count];
  }
}

}  // namespace astraea::shapes
