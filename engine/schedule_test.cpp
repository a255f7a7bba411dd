// The schedule file: round trip, and every malformed case refused with the file and field named.
#include "engine/schedule.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace astraea {
namespace {

namespace fs = std::filesystem;

std::string write_text(const std::string& name, const std::string& text) {
  const auto path = (fs::temp_directory_path() / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(Schedule, RoundTripsThroughItsFile) {
  TokenBudgetSchedule s;
  s.model = "tiny";
  s.budgets = {1, 1, 0.5, 0, 0.3};
  s.selection = {2.0, 0.25, 16, 0.1, true};
  s.provenance = {{"study", "demo"}, {"trial", "7"}};
  const auto path = (fs::temp_directory_path() / "astraea_schedule_rt.json").string();
  write_schedule(path, s);
  const auto r = read_schedule(path, "tiny", 5);
  EXPECT_EQ(r.model, s.model);
  EXPECT_EQ(r.budgets, s.budgets);
  EXPECT_EQ(r.selection, s.selection);
  EXPECT_EQ(r.provenance, s.provenance);
  EXPECT_DOUBLE_EQ(r.compute_share(), 2.8 / 5);
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find(R"("method": "astraea")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("version": 2)"), std::string::npos) << text;
  fs::remove(path);
}

TEST(Schedule, AReusingStepIsWrittenAndReadAsReuse) {
  TokenBudgetSchedule s;
  s.model = "tiny";
  s.budgets = {1, kReuseBudget, 0.5, 0};
  const auto path =
      (std::filesystem::temp_directory_path() / ("reuse_" + std::to_string(::getpid()) + ".json")).string();
  const auto text = write_schedule(path, s);
  EXPECT_NE(text.find("\"reuse\""), std::string::npos) << text;
  EXPECT_EQ(read_schedule(path).budgets, s.budgets);
  EXPECT_DOUBLE_EQ(s.compute_share(), 1.5 / 4) << "a reusing step computes no token";
  s.budgets = {kReuseBudget, 1};
  EXPECT_THROW(validate_schedule(s, "s"), std::runtime_error);
  std::filesystem::remove(path);
}

TEST(Schedule, VersionOneFilesWithoutAMethodStillLoad) {
  const auto path = write_text("astraea_schedule_v1.json", R"({"format": "astraea-schedule", "version": 1,
      "model": "tiny", "steps": 3, "budgets": [1, 0.5, 0], "selection": {"w_lse": 2}})");
  const auto r = read_schedule(path, "tiny", 3);
  EXPECT_EQ(r.budgets, (std::vector<double>{1, 0.5, 0}));
  EXPECT_EQ(r.selection.w_lse, 2);
  fs::remove(path);
}

TEST(Schedule, UniformBudgetKeepsTheFirstStepsDense) {
  auto s = uniform_schedule("tiny", 5, 0.4, 2);
  EXPECT_EQ(s.budgets, (std::vector<double>{1, 1, 0.4, 0.4, 0.4}));
  EXPECT_THROW(uniform_schedule("tiny", 5, 1.5, 2), std::invalid_argument);
  EXPECT_THROW(uniform_schedule("tiny", 5, 0.5, 6), std::invalid_argument);
}

struct Bad {
  const char* name;
  std::string text;
  const char* needle;
};

class MalformedSchedule : public ::testing::TestWithParam<Bad> {};

TEST_P(MalformedSchedule, IsRefusedNamingTheField) {
  const auto& bad = GetParam();
  const auto path = write_text(std::string("astraea_bad_") + bad.name + ".json", bad.text);
  try {
    read_schedule(path, "tiny", 3);
    ADD_FAILURE() << bad.name << " was accepted";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find(bad.needle), std::string::npos) << m;
  }
  fs::remove(path);
}

const std::string kHead =
    R"({"format": "astraea-schedule", "version": 2, "method": "astraea", "model": "tiny", )";

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedSchedule,
    ::testing::Values(
        Bad{"not_json", "{budgets: [1", "not valid JSON"}, Bad{"not_object", "[1, 2]", "not a JSON object"},
        Bad{"format", R"({"format": "other", "version": 1})", "'format'"},
        // Found by fuzz_schedule: a format that is not a string escaped as nlohmann's type_error.
        Bad{"format_number", R"({"format": 55555, "version": 1})", "'format'"},
        Bad{"version", R"({"format": "astraea-schedule", "version": 3, "model": "tiny"})", "'version' 3"},
        Bad{"no_method",
            R"({"format": "astraea-schedule", "version": 2, "model": "tiny", "steps": 1, "budgets": [1]})",
            "'method' must be a string"},
        Bad{"other_method",
            R"({"format": "astraea-schedule", "version": 2, "method": "teacache", "model": "tiny",
            "steps": 1, "budgets": [1]})",
            "'method' \"teacache\""},
        Bad{"method_in_v1",
            R"({"format": "astraea-schedule", "version": 1, "method": "astraea", "model": "tiny",
            "steps": 1, "budgets": [1]})",
            "unknown field 'method' in version 1"},
        Bad{"unknown_field", kHead + R"("steps": 3, "budgets": [1, 1, 1], "speed": 2})",
            "unknown field 'speed'"},
        Bad{"steps_mismatch", kHead + R"("steps": 4, "budgets": [1, 1, 1]})", "'budgets' has 3"},
        Bad{"run_steps", kHead + R"("steps": 2, "budgets": [1, 1]})", "the run has 3"},
        Bad{"above_one", kHead + R"("steps": 3, "budgets": [1, 1.5, 1]})", "budgets[1]"},
        Bad{"negative", kHead + R"("steps": 3, "budgets": [1, -0.1, 1]})", "budgets[1]"},
        Bad{"nan", kHead + R"("steps": 3, "budgets": [1, null, 1]})", "budgets[1] = null"},
        Bad{"first_zero", kHead + R"("steps": 3, "budgets": [0, 1, 1]})", "budgets[0] is 0"},
        Bad{"wrong_model",
            R"({"format": "astraea-schedule", "version": 1, "model": "wan2.1-1.3b", "steps": 3, "budgets": [1, 1, 1]})",
            "for model 'wan2.1-1.3b'"},
        Bad{"tile", kHead + R"("steps": 3, "budgets": [1, 1, 1], "selection": {"tile": 0}})",
            "'selection.tile'"},
        Bad{"selection_field", kHead + R"("steps": 3, "budgets": [1, 1, 1], "selection": {"w_x": 1}})",
            "unknown field 'selection.w_x'"}),
    [](const ::testing::TestParamInfo<Bad>& i) { return std::string(i.param.name); });

TEST(Schedule, NanInMemoryIsRefused) {
  TokenBudgetSchedule s;
  s.model = "tiny";
  s.budgets = {1, std::nan("")};
  EXPECT_THROW(validate_schedule(s, "x"), std::runtime_error);
}

}  // namespace
}  // namespace astraea
