// The report's data island against a golden file, its empty-store behaviour, and the page's shape.
#include "reports/report.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace astraea::reports {
namespace {

namespace fs = std::filesystem;

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("astraea_report_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

db::MeasurementRecord m(const std::string& name, double v, const std::string& op = "") {
  return {name, "", v, std::nullopt, std::nullopt, op, "test"};
}

// A store with one of everything, written through the public API with fixed values.
void fill(db::Store& store) {
  for (double b : {1.0, 0.5}) {
    for (int seed : {0, 1}) {
      db::RunRecord r;
      r.kind = "sweep-cell";
      r.device = "cpu";
      r.git_revision = "abc123";
      r.cell_key = "cell-" + std::to_string(b) + "-" + std::to_string(seed);
      r.config_json = nlohmann::json{{"model", "tiny"}, {"frames", 8}, {"height", 32}, {"width", 48}, {"seed", seed},
                                     {"prompt", "a red circle moving left on a gray background"},
                                     {"method", {{"budget", b}}}, {"command", "astraea-bench sweep --budgets 1,0.5"}}
                          .dump();
      r.measurements = {m("sample_s", b == 1.0 ? 4.0 + seed : 2.0 + seed), m("cache_bytes", 1.5e6),
                        m("vbench_proxy_total", 0.9 - 0.1 * (1 - b))};
      if (b < 1) {
        r.measurements.push_back(m("psnr", 30.0 + seed));
        r.measurements.push_back(m("ssim", 0.95));
      }
      store.add_run(r);
    }
  }
  for (double b : {1.0, 0.5}) {
    db::RunRecord r;
    r.kind = "profile";
    r.device = "NVIDIA H100 80GB HBM3";
    r.versions_json = R"({"cuda_runtime": 13000, "libtorch": "2.11.0"})";
    r.config_json = nlohmann::json{{"model", "wan2.1-1.3b"}, {"frames", 81}, {"height", 480}, {"width", 832},
                                   {"tokens", 32760}, {"budget", b}}.dump();
    r.measurements = {m("step_ms", 1000 * b + 40), m("dense_step_ms", 1040), m("step_noise", 0.01),
                      m("op_ms", 700 * b, "attention"), m("op_ms", 250 * b, "feed-forward"), m("op_ms", 30, "selection")};
    store.add_run(r);
  }
  // The same step on 2 ranks (CFG 2), and a study tuned for 2 ranks: the scaling section.
  for (double b : {1.0, 0.5}) {
    db::RunRecord r;
    r.kind = "profile";
    r.device = "NVIDIA H100 80GB HBM3";
    r.config_json = nlohmann::json{{"model", "wan2.1-1.3b"}, {"frames", 81}, {"height", 480},
                                   {"width", 832},           {"budget", b},  {"world_size", 2},
                                   {"parallel", "cfg 2"}}
                        .dump();
    r.measurements = {m("step_ms", 500 * b + 40), m("dense_step_ms", 520), m("op_ms", 20, "comm")};
    store.add_run(r);
  }
  db::RunRecord validation;
  validation.kind = "validation";
  validation.config_json = R"({"study": "two", "world_size": 2})";
  validation.measurements = {m("predicted_dense_ms", 4000), m("predicted_ms", 2000)};
  store.add_run(validation);
  const int64_t study = store.create_or_get_study("s1", R"({"fitness": "psnr"})");
  const std::vector<std::pair<double, double>> trials = {{1, 20}, {2, 30}, {3, 25}};
  int64_t best = 0;
  for (size_t i = 0; i < trials.size(); ++i) {
    const auto c = store.claim_trial(study, "[1,1," + std::to_string(i) + "]", "w");
    store.complete_trial(c.trial.id, trials[i].second, trials[i].first, 1.0, "cpu");
    if (i == 1) best = c.trial.id;
  }
  store.add_exported_schedule(study, best, "/tmp/tuned.json", R"({"budgets": [1, 1, 0.5, 0.3]})");
}

TEST_F(ReportTest, DataIslandMatchesTheGoldenFile) {
  auto store = db::Store::open((dir_ / "r.db").string());
  fill(store);
  // Scaling, by hand: 2 ranks' dense step 520 ms against one rank's 1040 is 2x; the study tuned for
  // 2 ranks predicts 4000 / 2000 over that, 4x. The one-rank latency section keeps its 2 rows.
  {
    const auto data = gather(store, {});
    ASSERT_EQ(data["scaling"].size(), 2u);
    EXPECT_EQ(data["scaling"][1]["ranks"], 2);
    EXPECT_DOUBLE_EQ(data["scaling"][1]["dense_speedup"].get<double>(), 2.0);
    EXPECT_DOUBLE_EQ(data["scaling"][1]["tuned_speedup"].get<double>(), 4.0);
    EXPECT_EQ(data["latency"].size(), 2u);
  }
  const auto data = gather(store, {});
  const fs::path golden = fs::path(ASTRAEA_SOURCE_DIR_FOR_TESTS) / "reports" / "testdata" / "golden_report.json";
  if (std::getenv("ASTRAEA_UPDATE_GOLDEN")) std::ofstream(golden) << data.dump(2) << "\n";
  std::ifstream in(golden);
  ASSERT_TRUE(in) << golden << " is missing (ASTRAEA_UPDATE_GOLDEN=1 writes it)";
  EXPECT_EQ(data, nlohmann::json::parse(in)) << data.dump(2);
  // The numbers that matter, spelled out: speedup of budget 0.5 over dense (mean 4.5 s / 2.5 s).
  bool found = false;
  for (const auto& row : data["summary"])
    if (row["method"] == "budget 0.50") {
      EXPECT_DOUBLE_EQ(row["speedup"].get<double>(), 4.5 / 2.5);
      EXPECT_DOUBLE_EQ(row["psnr"].get<double>(), 30.5);
      found = true;
    }
  EXPECT_TRUE(found);
  EXPECT_EQ(data["study"]["front"], nlohmann::json::array({0, 1}));
  EXPECT_TRUE(data["missing"].empty());
}

// Cells of a registered method (sweep --method) are named by it, and --method keeps one method's
// cells with the dense ones they are compared against.
TEST_F(ReportTest, MethodCellsAreNamedAndMethodFiltersTheSummary) {
  auto store = db::Store::open((dir_ / "m.db").string());
  fill(store);
  db::RunRecord r;
  r.kind = "sweep-cell";
  r.device = "cpu";
  r.cell_key = "cell-teacache";
  r.config_json =
      nlohmann::json{{"model", "tiny"}, {"frames", 8},
                     {"height", 32},    {"width", 48},
                     {"seed", 0},       {"method", {{"name", "teacache"}, {"params", {{"threshold", 0.1}}}}}}
          .dump();
  r.measurements = {m("sample_s", 3.0)};
  store.add_run(r);
  auto methods = [&](const std::string& only) {
    ReportOptions o;
    o.method = only;
    std::set<std::string> names;
    const auto data = gather(store, o);
    for (const auto& row : data["summary"]) names.insert(row["method"].get<std::string>());
    return names;
  };
  EXPECT_EQ(methods(""), (std::set<std::string>{"dense", "budget 0.50", R"(teacache {"threshold":0.1})"}));
  EXPECT_EQ(methods("astraea"), (std::set<std::string>{"dense", "budget 0.50"}));
  EXPECT_EQ(methods("teacache"), (std::set<std::string>{"dense", R"(teacache {"threshold":0.1})"}));
}

// The methods chart: each method's cells as a point, measured speed against the dense cells, and
// with a step-cost table the cells' step actions priced (hand-computed below).
TEST_F(ReportTest, MethodsAreComparedAtMeasuredAndPricedSpeed) {
  auto store = db::Store::open((dir_ / "p.db").string());
  auto cell = [&](const std::string& key, const nlohmann::json& method,
                  const std::vector<std::string>& actions, double seconds, double psnr) {
    db::RunRecord r;
    r.kind = "sweep-cell";
    r.device = "cpu";
    r.cell_key = key;
    r.config_json = nlohmann::json{{"model", "tiny"}, {"frames", 8},      {"height", 32},
                                   {"width", 48},     {"method", method}, {"step_actions", actions}}
                        .dump();
    r.measurements = {m("sample_s", seconds)};
    if (psnr > 0) r.measurements.push_back(m("psnr", psnr));
    store.add_run(r);
  };
  cell("d", {{"name", "dense"}, {"params", nlohmann::json::object()}},
       {"dense+dense", "dense+dense", "dense+dense", "dense+dense"}, 8, 0);
  cell("t1", {{"name", "teacache"}, {"params", {{"threshold", 0.1}}}},
       {"dense+dense", "reuse@0+reuse@0", "dense+dense", "dense+dense"}, 6, 30);
  cell("t2", {{"name", "teacache"}, {"params", {{"threshold", 0.3}}}},
       {"dense+dense", "reuse@0+reuse@0", "reuse@0+reuse@0", "dense+dense"}, 4, 26);
  cell("f1", {{"name", "fbcache"}, {"params", {{"threshold", 0.2}}}},
       {"dense+dense", "reuse@1+reuse@1", "reuse@1+reuse@1", "dense+dense"}, 5, 28);
  const auto costs = dir_ / "costs.json";
  std::ofstream(costs) << nlohmann::json{{"tokens", 768},    {"layers", 6},
                                         {"dense_ms", 10},   {"reuse_ms", 0},
                                         {"stand_in_ms", 1}, {"first_block_ms", 2.5},
                                         {"pab_self_ms", 8}, {"pab_cross_ms", 9},
                                         {"pab_both_ms", 7}, {"tokens_ms", {{"0.5", 6}}}}
                              .dump();
  ReportOptions o;
  o.step_costs = costs.string();
  const auto data = gather(store, o);
  ASSERT_EQ(data["peers"].size(), 1u);
  const auto& g = data["peers"][0];
  ASSERT_EQ(g["points"].size(), 3u);
  std::map<std::string, nlohmann::json> by_label;
  for (const auto& p : g["points"]) by_label[p["label"].get<std::string>()] = p;
  const auto& t2 = by_label.at(R"(teacache {"threshold":0.3})");
  EXPECT_DOUBLE_EQ(t2["speedup"].get<double>(), 8.0 / 4.0);
  // Priced: dense 8 calls x 10 ms = 80; t2 = 4 dense + 4 stand-ins of 1 ms = 44.
  EXPECT_DOUBLE_EQ(t2["priced_speedup"].get<double>(), 80.0 / 44.0);
  // fbcache: 4 x 10 + 4 x 2.5 = 50.
  EXPECT_DOUBLE_EQ(by_label.at(R"(fbcache {"threshold":0.2})")["priced_speedup"].get<double>(), 80.0 / 50.0);
  // TeaCache at equal priced speed 1.5x: between (80/62 = 1.29, 30 dB) and (1.82, 26 dB).
  for (const auto& row : g["equal_speed"]) {
    if (row["method"] != "teacache") continue;
    const double s0 = 80.0 / 62.0, s1 = 80.0 / 44.0;
    EXPECT_NEAR(row["psnr"]["1.5x"].get<double>(), 30 + (1.5 - s0) / (s1 - s0) * (26 - 30), 1e-9);
    EXPECT_TRUE(row["psnr"]["2.0x"].is_null()) << "beyond the curve";
  }
  o.step_costs = (dir_ / "none.json").string();
  EXPECT_THROW(gather(store, o), std::invalid_argument) << "a missing table is named, not ignored";
}

TEST_F(ReportTest, AnEmptyStoreStillGivesAPageThatSaysWhatIsMissing) {
  const auto store = db::Store::open((dir_ / "empty.db").string());
  const auto data = gather(store, {});
  EXPECT_TRUE(data["summary"].empty());
  EXPECT_TRUE(data["study"].is_null());
  ASSERT_EQ(data["missing"].size(), 5u);
  const auto html = render_html(data, {}, "window.Chart=function(){};");
  EXPECT_NE(html.find("id=\"astraea-data\""), std::string::npos);
  EXPECT_NE(html.find("No videos"), std::string::npos);
  EXPECT_THROW(gather(store, {"no-such-study"}), std::invalid_argument);
}

TEST_F(ReportTest, TheIslandCannotCloseItsScriptElement) {
  auto store = db::Store::open((dir_ / "x.db").string());
  db::RunRecord r;
  r.kind = "sweep-cell";
  r.config_json = R"({"model": "</script><script>alert(1)</script>", "method": {"budget": 1}})";
  r.measurements = {m("sample_s", 1)};
  store.add_run(r);
  const auto html = render_html(gather(store, {}), {}, "");
  EXPECT_EQ(html.find("</script><script>alert"), std::string::npos);
}

}  // namespace
}  // namespace astraea::reports

namespace astraea::reports {
namespace {

// Two 1-frame 1x3 videos: equal pixel, a half-scale difference, a difference beyond full scale.
TEST(DifferenceHeatmap, MapsTheMeanAbsoluteDifferenceOntoTheRamp) {
  const float a[9] = {0.2f, 0.4f, 0.6f, 0.5f, 0.5f, 0.5f, 0.0f, 0.0f, 0.0f};
  // Pixel 1: |diff| 0.125 in each channel -> mean 0.125 = half of full scale (0.25) -> t = 1.5 on
  // the 3-segment ramp: halfway from purple (0.45, 0.1, 0.55) to orange (0.95, 0.45, 0.1).
  // Pixel 2: 0.9 in each channel, over full scale -> yellow (1, 0.95, 0.3).
  const float b[9] = {0.2f, 0.4f, 0.6f, 0.625f, 0.375f, 0.625f, 0.9f, 0.9f, 0.9f};
  const auto h = difference_heatmap(a, b, 1, 1, 3);
  ASSERT_EQ(h.size(), 9u);
  const float expected[9] = {0, 0, 0, 0.7f, 0.275f, 0.325f, 1, 0.95f, 0.3f};
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(h[i], expected[i], 1e-6) << i;
  // Symmetric in its arguments.
  EXPECT_EQ(difference_heatmap(b, a, 1, 1, 3), h);
}

}  // namespace
}  // namespace astraea::reports
