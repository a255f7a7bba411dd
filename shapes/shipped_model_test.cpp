// The shipped tiny model on the CPU: at its CPU size it draws what an easy prompt asks for.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "shapes/shapes_checker.h"
#include "shapes/shapes_world.h"

namespace astraea::shapes {
namespace {

std::string shipped_weights() {
  const char* src = std::getenv("ASTRAEA_SOURCE_DIR");
  return (std::filesystem::path(src ? src : ".") / "assets" / "tiny.safetensors").string();
}

TEST(ShippedTiny, DrawsAnEasyPromptAtTheCpuSize) {
  const auto weights = shipped_weights();
  ASSERT_TRUE(std::filesystem::exists(weights)) << weights << " is shipped with the repository";
  GenerateOptions o;
  o.model = "tiny";
  o.weights = weights;
  o.prompt = "a red circle moving right on a black background";
  o.seed = 7;
  const auto r = generate(o);  // CPU size: 8 x 32 x 48, 30 guided steps
  ASSERT_EQ(r.video.sizes(), (std::vector<int64_t>{8, 32, 48, 3}));
  const auto verdict = check_clip(r.video.data_ptr<float>(), 8, 32, 48, shapes::parse_prompt(o.prompt));
  ASSERT_EQ(verdict.objects.size(), 1u);
  EXPECT_TRUE(verdict.objects[0].found);
  EXPECT_TRUE(verdict.objects[0].colour_ok)
      << "found " << shapes::colour_name(verdict.objects[0].found_colour);
  EXPECT_TRUE(verdict.objects[0].shape_ok) << "found " << shapes::shape_name(verdict.objects[0].found_shape);
  EXPECT_TRUE(verdict.objects[0].motion_ok)
      << "found " << shapes::motion_name(verdict.objects[0].found_motion);
  EXPECT_TRUE(verdict.background_ok) << "found " << shapes::background_name(verdict.found_background);
}

TEST(ShippedTiny, MetadataRecordsTheTrainingRun) {
  const auto weights = shipped_weights();
  ASSERT_TRUE(std::filesystem::exists(weights));
  const auto json = weights.substr(0, weights.size() - std::string(".safetensors").size()) + ".json";
  ASSERT_TRUE(std::filesystem::exists(json)) << json;
  EXPECT_LE(std::filesystem::file_size(weights), 16u << 20);
  const auto record = nlohmann::json::parse(std::ifstream(json));
  for (const char* key :
       {"steps", "loss_first", "loss_last", "loss_curve", "data_seed", "wall_s", "card", "adherence"}) {
    EXPECT_TRUE(record.contains(key)) << json << " lacks '" << key << "'";
  }
  EXPECT_LT(record.at("loss_last").get<double>(), record.at("loss_first").get<double>());
}

}  // namespace
}  // namespace astraea::shapes
