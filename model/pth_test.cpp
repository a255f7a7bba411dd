#include "model/pth.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace astraea {
namespace {

const std::string kFixtures = ASTRAEA_WAN_FIXTURES;

void expect_refused(const std::string& path, const std::string& what) {
  try {
    read_pth(path);
    ADD_FAILURE() << "read " << path;
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

// What Python's torch.save wrote (scripts/wan_fixtures.py) reads back tensor for tensor: dtypes
// kept, a view into a shared storage and a transposed view at their offsets and strides.
TEST(Pth, ReadsAStateDictAsTorchSaveWroteIt) {
  const auto got = read_pth(kFixtures + "/state_dict.pth");
  const auto expected = SafetensorsFile::open(kFixtures + "/state_dict.safetensors");
  ASSERT_EQ(got.size(), expected.tensors().size());
  for (const auto& t : expected.tensors()) {
    ASSERT_TRUE(got.count(t.name)) << t.name;
    const auto want = at::from_blob(const_cast<std::byte*>(t.data), t.shape, at::kFloat);
    EXPECT_EQ(got.at(t.name).sizes(), want.sizes()) << t.name;
    EXPECT_TRUE(at::equal(got.at(t.name).to(at::kFloat), want)) << t.name;
  }
  EXPECT_EQ(got.at("blocks.0.bias").scalar_type(), at::kBFloat16);
  EXPECT_EQ(got.at("blocks.0.weight").scalar_type(), at::kFloat);
  EXPECT_FALSE(got.at("shared.t").is_contiguous());
  EXPECT_FLOAT_EQ(got.at("scale").item<float>(), 2.5f);
}

TEST(Pth, RefusesWhatIsNotAStateDictNamingTheFile) {
  expect_refused(kFixtures + "/list.pth", "the top level is not a tensor or a dict of them");
  expect_refused(kFixtures + "/legacy.pth", "not a torch.save zip archive");
  expect_refused(kFixtures + "/missing.pth", "no such file");
  expect_refused(kFixtures + "/cut_pickle.pth", "the pickle ends early");
  const auto cut =
      (std::filesystem::temp_directory_path() / ("astraea_cut_" + std::to_string(::getpid()) + ".pth"))
          .string();
  {
    std::ifstream in(kFixtures + "/state_dict.pth", std::ios::binary);
    std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  expect_refused(cut, "not a torch.save zip archive");
  std::filesystem::remove(cut);
}

// Hand-written pickles that attack a reader (scripts/wan_fixtures.py): each is refused in one
// line naming the file, without a crash, an endless walk or a view past its storage.
TEST(Pth, RefusesHostilePicklesNamingWhatIsWrong) {
  std::ifstream in(kFixtures + "/hostile.json");
  const auto cases = nlohmann::json::parse(in);
  ASSERT_EQ(cases.size(), 5u);
  for (const auto& [file, words] : cases.items())
    expect_refused(kFixtures + "/" + file, words.get<std::string>());
}

}  // namespace
}  // namespace astraea
