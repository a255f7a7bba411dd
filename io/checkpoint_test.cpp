#include "io/checkpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace astraea {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/astraea-checkpoint-XXXXXX";
    ASSERT_NE(mkdtemp(t), nullptr);
    dir_ = t;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A shard holding one float tensor per name, each [2] with values {V, V + 1}, V its position.
  std::string shard(const std::string& file, const std::vector<std::string>& names, float first = 0) {
    values_.emplace_back();
    auto& v = values_.back();
    for (size_t i = 0; i < names.size(); ++i) v.push_back({first + 2 * i, first + 2 * i + 1});
    std::vector<TensorToWrite> tensors;
    for (size_t i = 0; i < names.size(); ++i) tensors.push_back({names[i], DType::F32, {2}, v[i].data()});
    write_safetensors((dir_ / file).string(), tensors);
    return (dir_ / file).string();
  }
  std::string index(const std::string& text, const std::string& file = "model.safetensors.index.json") {
    std::ofstream((dir_ / file).string()) << text;
    return (dir_ / file).string();
  }
  static float first_value(const TensorView& t) {
    float f;
    std::memcpy(&f, t.data, sizeof f);
    return f;
  }
  // Opening PATH fails with a message holding every one of PARTS.
  static void expect_error(const std::string& path, std::vector<std::string> parts) {
    try {
      Checkpoint::open(path);
      ADD_FAILURE() << path << " opened";
    } catch (const SafetensorsError& e) {
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
  std::vector<std::vector<std::array<float, 2>>> values_;
};

TEST_F(CheckpointTest, OneFileIsACheckpointOfOneShard) {
  const auto file = shard("one.safetensors", {"a", "b"});
  const auto c = Checkpoint::open(file);
  EXPECT_FALSE(c.sharded());
  ASSERT_NE(c.find("b"), nullptr);
  EXPECT_EQ(first_value(*c.find("b")), 2.0f);
  EXPECT_EQ(c.find("c"), nullptr);
  EXPECT_EQ(c.tensors().size(), 2u);
  EXPECT_EQ(c.files(), std::vector<std::string>{file});
  // A folder with one .safetensors file opens that file.
  EXPECT_EQ(Checkpoint::open(dir_.string()).path(), file);
}

TEST_F(CheckpointTest, AnIndexJoinsItsShards) {
  const auto s1 = shard("m-00001-of-00002.safetensors", {"blocks.0.w", "head.w"}, 0);
  const auto s2 = shard("m-00002-of-00002.safetensors", {"blocks.1.w"}, 100);
  const auto idx = index(R"({"metadata": {"total_size": 24}, "weight_map": {
      "blocks.0.w": "m-00001-of-00002.safetensors", "head.w": "m-00001-of-00002.safetensors",
      "blocks.1.w": "m-00002-of-00002.safetensors"}})");
  for (const auto& path : {idx, dir_.string()}) {  // the index, or the folder holding it
    const auto c = Checkpoint::open(path);
    EXPECT_TRUE(c.sharded());
    EXPECT_EQ(c.path(), idx);
    ASSERT_NE(c.find("blocks.1.w"), nullptr);
    EXPECT_EQ(first_value(*c.find("blocks.1.w")), 100.0f);
    EXPECT_EQ(first_value(*c.find("head.w")), 2.0f);
    EXPECT_EQ(c.file_of("blocks.1.w"), s2);
    EXPECT_EQ(c.file_of("head.w"), s1);
    EXPECT_EQ(c.tensors().size(), 3u);
    EXPECT_EQ(c.files(), (std::vector<std::string>{idx, s1, s2}));
  }
}

TEST_F(CheckpointTest, TheReleaseNamesWinInAFolder) {
  shard("other.safetensors", {"x"});
  const auto release = shard("diffusion_pytorch_model.safetensors", {"y"});
  EXPECT_EQ(Checkpoint::open(dir_.string()).path(), release);
}

TEST_F(CheckpointTest, BadIndexesAndFoldersFailNamingTheFileAndField) {
  expect_error(dir_.string(), {dir_.string(), "no diffusion_pytorch_model.safetensors", "0 indexes"});
  shard("a.safetensors", {"a"});
  shard("b.safetensors", {"b"}, 10);
  expect_error(dir_.string(), {"2 .safetensors files", "pass the file itself"});
  expect_error(index("{\"weight_map\": "), {"model.safetensors.index.json: not JSON"});
  expect_error(index(R"({"metadata": {}})"), {"field 'weight_map' is missing"});
  expect_error(index(R"({"weight_map": {}})"), {"maps no tensor"});
  expect_error(index(R"({"weight_map": {"a": 3}})"), {"weight_map['a'] is not a file name"});
  expect_error(index(R"({"weight_map": {"a": "../a.safetensors"}})"), {"not a file beside the index"});
  expect_error(index(R"({"weight_map": {"a": "a.safetensors", "z": "gone.safetensors"}})"),
               {"shard 'gone.safetensors' (of tensor 'z') is missing"});
  expect_error(index(R"({"weight_map": {"a": "a.safetensors", "b": "a.safetensors"}})"),
               {"tensor 'b' is mapped to", "a.safetensors, which lacks it"});
  shard("ab.safetensors", {"a", "b"}, 20);
  expect_error(index(R"({"weight_map": {"a": "ab.safetensors"}})"),
               {"ab.safetensors: tensor 'b' is not mapped to this shard by"});
  std::ofstream((dir_ / "broken.safetensors").string()) << "not a safetensors file";
  expect_error(index(R"({"weight_map": {"a": "broken.safetensors"}})"), {"broken.safetensors"});
}

}  // namespace
}  // namespace astraea
