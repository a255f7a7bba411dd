#include "apps/scoring.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "io/safetensors.h"
#include "io/video_io.h"
#include "shapes/semantic_check.h"

namespace astraea::app {

at::Tensor load_video(const std::string& flag, const std::string& path, double* fps, VideoDecode decode) {
  if (ends_with(path, ".safetensors")) {
    const auto file = SafetensorsFile::open(path);  // throws naming the file
    const auto* v = file.find("video");
    if (!v) throw UsageError(flag + " " + path + ": no tensor 'video' (expected float32 [frames, height, width, 3])");
    if (v->dtype != DType::F32 || v->shape.size() != 4 || v->shape[3] != 3) {
      throw UsageError(flag + " " + path + ": tensor 'video' must be float32 [frames, height, width, 3]");
    }
    auto t = at::from_blob(const_cast<std::byte*>(v->data), v->shape, at::kFloat).clone();
    if (!at::isfinite(t).all().item<bool>() || t.min().item<float>() < 0 || t.max().item<float>() > 1) {
      throw UsageError(flag + " " + path + ": tensor 'video' has values outside [0, 1]");
    }
    return t;
  }
  Video v;
  try {
    v = read_video(path, decode);
  } catch (const std::exception& e) {
    throw UsageError(flag + " " + std::string(e.what()));
  }
  if (fps && v.fps > 0) *fps = v.fps;
  return at::from_blob(v.rgb.data(), {v.frames, v.height, v.width, 3}, at::kFloat).clone();
}

Scores score_video(const at::Tensor& video, const at::Tensor* reference, const std::string& prompt,
                   double fps, const quality::MetricList& metrics, const at::Tensor* vbench_video) {
  for (const auto* m : metrics) {
    if (m->needs_reference && !reference)
      throw UsageError(m->name + " needs a reference video (--reference)");
  }
  const auto semantic =
      quality::judges_prompt(metrics) ? shapes::semantic_check(prompt) : nullptr;  // throws naming a bad word
  quality::MetricInput in;
  in.video = &video;
  in.vbench_video = vbench_video;
  in.reference = reference;
  in.semantic = semantic.get();
  in.fps = fps;
  return quality::score(metrics, in);
}

std::vector<db::MeasurementRecord> score_records(const Scores& scores) {
  std::vector<db::MeasurementRecord> out;
  for (const auto& [name, unit, value] : scores.all())
    out.push_back({name, unit, value, std::nullopt, std::nullopt, "", "quality"});
  return out;
}

void print_scores(std::ostream& out, const Scores& scores, bool json) {
  if (json) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [name, unit, value] : scores.all())
      j[name] = std::isinf(value) ? nlohmann::json("inf") : nlohmann::json(value);
    out << j.dump(2) << "\n";
    return;
  }
  for (const auto& [name, unit, value] : scores.all()) {
    char line[128];
    if (std::isinf(value)) {
      std::snprintf(line, sizeof line, "%-24s inf%s%s (identical)", name.c_str(), unit.empty() ? "" : " ", unit.c_str());
    } else {
      std::snprintf(line, sizeof line, "%-24s %.4f%s%s", name.c_str(), value, unit.empty() ? "" : " ", unit.c_str());
    }
    out << line << "\n";
  }
}

}  // namespace astraea::app
