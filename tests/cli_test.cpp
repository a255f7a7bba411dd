// astraea-bench as a user meets it: exit codes, one-line errors, and no partial outputs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "db/store.h"
#include "io/safetensors.h"
#include "model/model_config.h"
#include "model/weights.h"
#include "parallel/launch_env.h"
#include "tuner/latency_model.h"

namespace fs = std::filesystem;

namespace {

struct Run {
  int code;
  std::string out;  // stdout and stderr together
};

Run run_shell(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

Run run(const std::string& args) { return run_shell(std::string(ASTRAEA_BENCH_BIN) + " " + args); }

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("astraea_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

const char* kSmall = "generate --model tiny --weights random --frames 2 --height 16 --width 16 --steps 2";

TEST_F(Cli, HelpListsGenerateAndItsFlags) {
  auto r = run("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("generate"), std::string::npos);
  r = run("generate --help");
  EXPECT_EQ(r.code, 0);
  for (const char* flag : {"--model", "--weights", "--prompt", "--context", "--frames", "--steps",
                           "--guidance", "--seed", "--device", "--dtype", "--out", "4096 tokens"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
}

TEST_F(Cli, GeneratesSafetensorsWithTheVideoKey) {
  const auto out = path("v.safetensors");
  auto r = run(std::string(kSmall) + " --prompt 'a red circle' --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  auto f = astraea::SafetensorsFile::open(out);
  const auto& v = f.at("video");
  EXPECT_EQ(v.dtype, astraea::DType::F32);
  EXPECT_EQ(v.shape, (std::vector<int64_t>{2, 16, 16, 3}));
  EXPECT_EQ(f.metadata().at("prompt"), "a red circle");
  EXPECT_EQ(f.metadata().at("sampler"), "euler");  // the tiny preset's, as it was trained
  // UniPC (Wan's default) from the same noise: another video, recorded as such.
  r = run(std::string(kSmall) + " --prompt 'a red circle' --sampler unipc --out " + path("u.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  auto u = astraea::SafetensorsFile::open(path("u.safetensors"));
  EXPECT_EQ(u.metadata().at("sampler"), "unipc");
  EXPECT_NE(0, std::memcmp(u.at("video").data, v.data, v.nbytes));
}

TEST_F(Cli, SameSeedSameBytes) {
  ASSERT_EQ(run(std::string(kSmall) + " --seed 4 --out " + path("a.safetensors")).code, 0);
  ASSERT_EQ(run(std::string(kSmall) + " --seed 4 --out " + path("b.safetensors")).code, 0);
  auto a = astraea::SafetensorsFile::open(path("a.safetensors"));
  auto b = astraea::SafetensorsFile::open(path("b.safetensors"));
  ASSERT_EQ(a.at("video").nbytes, b.at("video").nbytes);
  EXPECT_EQ(0, std::memcmp(a.at("video").data, b.at("video").data, a.at("video").nbytes));
}

#if ASTRAEA_TEST_HAS_FFMPEG
TEST_F(Cli, GeneratesMp4) {
  auto r = run(std::string(kSmall) + " --out " + path("v.mp4"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_GT(fs::file_size(path("v.mp4")), 100u);
}
#endif

void expect_error(const Run& r, int code, const std::string& needle) {
  EXPECT_EQ(r.code, code) << r.out;
  EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "not one line: " << r.out;
}

TEST_F(Cli, BadInputsGiveOneErrorLineAndNoOutput) {
  const auto out = path("x.safetensors");
  expect_error(run("generate --model nope --out " + out), 2, "unknown model preset 'nope'");
  expect_error(run(std::string(kSmall) + " --out " + path("x.avi")), 2, "--out");
  expect_error(run(std::string(kSmall) + " --out /nonexistent/dir/x.mp4"), 2, "/nonexistent/dir");
  expect_error(run("generate --model tiny --weights random --height 30 --out " + out), 2, "--height 30");
  expect_error(run(std::string(kSmall) + " --device cuda:7x --out " + out), 2, "--device");
  expect_error(run(std::string(kSmall) + " --frames abc --out " + out), 2, "--frames");
  expect_error(run("generate --model tiny --weights " + path("none.safetensors") + " --out " + out), 1,
               "none.safetensors");
  expect_error(run("generate --model tiny --out"), 2, "--out");
  expect_error(run(std::string(kSmall) + " --vae random --out " + out), 2,
               "--vae: tiny draws pixels itself and has no VAE; leave --vae out");
  expect_error(run(std::string(kSmall) + " --vae-tile -2 --out " + out), 2, "--vae-tile");
  expect_error(run(std::string(kSmall) + " --sampler heun --out " + out), 2,
               "--sampler 'heun' is not euler or unipc");
  expect_error(run("generate --model wan2.1-1.3b --weights " + path("") + " --out " + out), 1,
               "no diffusion_pytorch_model.safetensors");
  EXPECT_FALSE(fs::exists(out));
}

// A short training run ends with its adherence check at the preset's guidance, recorded beside
// the weights with the motion found for each prompted motion; bad sizes are refused up front.
TEST_F(Cli, TrainRecordsItsRunAndWhereMotionFails) {
  const auto out = path("t.safetensors");
  const std::string train = "train --steps 2 --warmup 1 --sizes 2x16x16:2 --checkpoint-dir " + path("ckpt") +
                            " --eval-prompts 3 --eval-size 3x16x16 --out " + out;
  auto r = run(train);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("at 3x16x16, guidance 4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("standing still"), std::string::npos) << r.out;
  std::ifstream in(path("t.json"));
  const auto record = nlohmann::json::parse(in);
  EXPECT_EQ(record.at("steps"), 2);
  const auto& adherence = record.at("adherence");
  EXPECT_EQ(adherence.at("size"), "3x16x16");
  EXPECT_EQ(adherence.at("clips"), 3);
  int64_t judged = 0;
  for (const auto& [prompted, row] : adherence.at("motion_found").items()) {
    for (const auto& [found, n] : row.items()) judged += n.get<int64_t>();
  }
  EXPECT_EQ(judged, adherence.at("objects").get<int64_t>());
  EXPECT_EQ(record.at("direction_gap").size(), 4u) << record.dump();
  EXPECT_NE(r.out.find("time-reversed prompt"), std::string::npos) << r.out;

  expect_error(run("train --steps 2 --sizes 2x16:2 --out " + path("u.safetensors")), 2, "--sizes");
  expect_error(run("train --steps 2 --sizes 2x16x16:2 --eval-size 3x16 --out " + path("u.safetensors")), 2,
               "--eval-size '3x16'");
  EXPECT_FALSE(fs::exists(path("u.safetensors")));
}

TEST_F(Cli, TokenBudgetsRunAndBadSchedulesDoNot) {
  auto r = run(std::string(kSmall) + " --budget 0.5 --dense-steps 1 --out " + path("b.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("token-wise: 75.0%"), std::string::npos) << r.out;  // (1 + 0.5) / 2 steps
  std::ofstream(path("s.json")) << R"({"format": "astraea-schedule", "version": 1, "model": "tiny", "steps": 2,
                                        "budgets": [1, 0]})";
  r = run(std::string(kSmall) + " --schedule " + path("s.json") + " --out " + path("s.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("1 skipped steps"), std::string::npos) << r.out;
  const auto out = path("x.safetensors");
  std::ofstream(path("bad.json")) << R"({"format": "astraea-schedule", "version": 1, "model": "tiny", "steps": 3,
                                          "budgets": [1, 1, 1]})";
  expect_error(run(std::string(kSmall) + " --schedule " + path("bad.json") + " --out " + out), 1, "the run has 2");
  expect_error(run(std::string(kSmall) + " --budget 1.5 --out " + out), 2, "--budget");
  expect_error(run(std::string(kSmall) + " --budget 0.5 --schedule " + path("s.json") + " --out " + out), 2,
               "--budget");
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(Cli, QueryReadsTheStoreInEveryFormatAndNeverWrites) {
  const auto db = path("q.db");
  {
    auto store = astraea::db::Store::open(db);
    astraea::db::RunRecord run;
    run.kind = "generate";
    run.config_json = R"({"model": "tiny"})";
    run.versions_json = "{}";
    run.device = "cpu, \"2 cores\"";  // a comma and quotes, for CSV quoting
    run.seed = 7;
    run.measurements = {{"latency", "ms", 12.5, 0, std::nullopt, "", "wall clock"},
                        {"psnr", "dB", 31.25, std::nullopt, std::nullopt, "", "quality"}};
    store.add_run(run);
  }
  auto r = run("query runs --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("generate"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(1 row)"), std::string::npos) << r.out;
  r = run("query runs --format csv --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.rfind("id,kind,created_at,device,seed,status,git_revision,measurements\r\n", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\"cpu, \"\"2 cores\"\"\""), std::string::npos) << r.out;
  r = run("query \"SELECT name, unit, value FROM measurements ORDER BY id\" --format json --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"value\": 12.5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"unit\": \"dB\""), std::string::npos) << r.out;
  expect_error(run("query \"DELETE FROM runs\" --db " + db), 1, "q.db");
  expect_error(run("query runs --format xml --db " + db), 2, "--format 'xml'");
  expect_error(run("query trials --db " + db), 2, "--study");
  expect_error(run("query runs --db " + path("none.db")), 2, "none.db does not exist");
  EXPECT_FALSE(fs::exists(path("none.db")));
  r = run("query \"SELECT count(*) AS n FROM runs\" --format csv --db " + db);
  EXPECT_NE(r.out.find("n\r\n1\r\n"), std::string::npos) << r.out;  // the DELETE did nothing
}

TEST_F(Cli, MethodsByNameAndTheirShorthandsAgree) {
  const auto r = run("methods");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("dense: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("astraea: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dense_steps      dense steps before budget applies (default 2)"), std::string::npos)
      << r.out;
  // --budget is ASTRAEA's shorthand: the same video, byte for byte, as --method astraea.
  const auto by_flag = path("flag.safetensors"), by_name = path("name.safetensors"),
             dense = path("dense.safetensors");
  ASSERT_EQ(run(std::string(kSmall) + " --budget 0.5 --dense-steps 1 --out " + by_flag).code, 0);
  const auto named = run(std::string(kSmall) + " --method astraea:budget=0.5,dense_steps=1 --out " + by_name);
  ASSERT_EQ(named.code, 0) << named.out;
  EXPECT_NE(named.out.find("method: astraea {\"budget\":0.5,\"dense_steps\":1,"), std::string::npos)
      << named.out;
  ASSERT_EQ(run(std::string(kSmall) + " --method dense --out " + dense).code, 0);
  auto bytes = [](const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  EXPECT_EQ(bytes(by_flag), bytes(by_name));
  EXPECT_NE(bytes(by_flag), bytes(dense));
  expect_error(
      run(std::string(kSmall) + " --method nosuch --out " + path("x.safetensors")), 2,
      "--method nosuch: method 'nosuch' is not registered (known: dense, astraea, teacache, magcache, "
      "easycache, fbcache, pab, toca)");
  expect_error(run(std::string(kSmall) + " --method astraea:budget=1.5 --out " + path("x.safetensors")), 2,
               "budget=1.5 is not a number in [0, 1]");
  EXPECT_FALSE(fs::exists(path("x.safetensors")));
}

TEST_F(Cli, CorruptOrMisshapedWeightsAreNamed) {
  const auto out = path("x.safetensors");
  // Truncated: a valid file cut in half.
  const auto& tiny = astraea::model_preset("tiny");
  astraea::save_weights(path("w.safetensors"), astraea::random_weights(tiny, 0, at::kCPU, at::kFloat));
  fs::resize_file(path("w.safetensors"), fs::file_size(path("w.safetensors")) / 2);
  expect_error(run("generate --model tiny --weights " + path("w.safetensors") + " --out " + out), 1,
               "w.safetensors");
  // Misshaped: a Wan-sized tensor name with the wrong shape.
  auto w = astraea::random_weights(tiny, 0, at::kCPU, at::kFloat);
  w["blocks.2.ffn.0.weight"] = at::zeros({3, 3});
  astraea::save_weights(path("m.safetensors"), w);
  expect_error(run("generate --model tiny --weights " + path("m.safetensors") + " --out " + out), 1,
               "blocks.2.ffn.0.weight");
  // Garbage bytes.
  std::ofstream(path("g.safetensors")) << "not a safetensors file at all";
  expect_error(run("generate --model tiny --weights " + path("g.safetensors") + " --out " + out), 1,
               "g.safetensors");
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace

// --- profile, sweep and the store's views --------------------------------------------------------

int64_t count_rows(const std::string& db, const std::string& sql) {
  auto store = astraea::db::Store::open(db);
  return std::stoll(*store.query(sql).rows.at(0).at(0));
}

// Starts COMMAND (an astraea-bench command line), waits until COUNT_SQL on DB reaches AT_LEAST,
// then kills it with SIGKILL. Returns the count it saw.
int64_t kill_when(const std::string& command, const std::string& db, const std::string& count_sql, int64_t at_least) {
  const pid_t child = fork();
  if (child == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + command + " >/dev/null 2>&1").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int64_t seen = 0;
  // Up to 3 minutes: on a loaded host (a GPU host's ctest -j 8 beside a training run) a sweep once
  // stored no cell within one.
  for (int i = 0; i < 1800 && seen < at_least; ++i) {
    usleep(100 * 1000);
    if (fs::exists(db)) seen = count_rows(db, count_sql);
  }
  ::kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  return seen;
}

// sweep, profile, tune and report reach a registered method by name; profile's rows of another
// method stay out of ASTRAEA's latency model.
TEST_F(Cli, SweepProfileTuneAndReportTakeAMethodByName) {
  const auto db = path("m.db");
  auto r =
      run("sweep --model tiny --weights random --frames 2 --height 16 --width 16 --steps 2 --budgets 0.5 "
          "--method dense --metrics psnr --prompt \"a red circle moving left on a gray background\" --db " +
          db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(
      count_rows(db, "SELECT count(*) FROM runs WHERE json_extract(config_json, '$.method.name') = 'dense'"),
      1);
  // The dense method's cell is its own reference (no PSNR); the budget cell is scored against it.
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'psnr'"), 1);
  const std::string profile =
      "profile --model tiny --frames 2 --height 16 --width 16 --warmup 1 --min-reps 2 --max-reps 3 "
      "--max-seconds 1 --db " +
      db;
  r = run(profile + " --method dense");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM method_latency WHERE method = 'dense' AND budget IS NULL"),
            1);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM latency"), 0) << "not ASTRAEA's";
  ASSERT_EQ(run(profile + " --budgets 0.5").code, 0);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM latency WHERE budget = 0.5"), 1);
  expect_error(run(profile + " --method nosuch"), 2, "--method nosuch: method 'nosuch' is not registered");
  expect_error(run("tune --study s --method dense --target-compute 0.5 --prompt \"a red circle moving left "
                   "on a gray background\" --db " +
                   db),
               2, "--method dense: tune searches per-step token budgets, which only astraea takes");
  expect_error(run("generate --model tiny --metrics psnr,lpips --out " + path("x.safetensors")), 2,
               "--metrics 'lpips' is not a metric (known: psnr, vbench-proxy, or both)");
  const auto html = path("m.html");
  r = run("report --method dense --max-videos 0 --db " + db + " --out " + html);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("1 summary rows"), std::string::npos) << "dense only: " << r.out;
}

// launch starts ranks with torchrun's environment, prefixes their lines, and when one rank dies
// stops the others and exits with its status.
TEST_F(Cli, LaunchRunsRanksAndStopsThemAllWhenOneDies) {
  auto r = run("launch --nproc 2 -- methods");  // astraea-bench itself, each rank's lines prefixed
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 0] dense: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[rank 1] dense: "), std::string::npos) << r.out;
  if (ASTRAEA_TEST_HAS_GLOO) {  // the ranks join one group (the GPU host's LibTorch has no Gloo)
    r = run(std::string("launch --nproc 2 --program ") + ASTRAEA_RANK_CHECK_BIN);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("[rank 0] rank 0 of 2: gloo collectives ok"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("[rank 1] rank 1 of 2: gloo collectives ok"), std::string::npos) << r.out;
  }
  // Rank 1 exits 3 after a second; rank 0 would sleep a minute: launch stops it (and its sleep) and
  // exits 3.
  const auto t0 = std::chrono::steady_clock::now();
  r =
      run("launch --nproc 2 --grace 2 --program /bin/sh -- -c 'echo started $RANK of $WORLD_SIZE; "
          "if [ $RANK = 1 ]; then sleep 1; exit 3; fi; sleep 60'");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("[rank 0] started 0 of 2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("launch: rank 1 exited with status 3; stopping the other ranks"), std::string::npos)
      << r.out;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  expect_error(run("launch --nproc 0 -- methods"), 2, "--nproc 0 is not in [1, 64]");
  expect_error(run("launch --nproc 2"), 2, "launch needs a command after --");
}

// Videos FILE_A and FILE_B differ by at most this much.
double video_difference(const std::string& file_a, const std::string& file_b) {
  auto a = astraea::SafetensorsFile::open(file_a);
  auto b = astraea::SafetensorsFile::open(file_b);
  const auto& va = a.at("video");
  const auto& vb = b.at("video");
  if (va.shape != vb.shape) return INFINITY;
  const auto* x = reinterpret_cast<const float*>(va.data);
  const auto* y = reinterpret_cast<const float*>(vb.data);
  double worst = 0;
  for (size_t i = 0; i < va.nbytes / sizeof(float); ++i)
    worst = std::max(worst, std::abs(double(x[i]) - y[i]));
  return worst;
}

// One generation on several ranks, launched as torchrun would, equals the one-process video: 3
// ranks split the tokens (Ulysses: the tiny preset's 3 heads), 2 by ring, 2 split the guidance
// branches (CFG, with the token-wise method), 6 and 4 do both; the token-wise method with the
// tokens split equals one process selecting in as many segments. Rank 0 alone writes.
TEST_F(Cli, SeveralRanksGenerateTheOneProcessVideo) {
  if (!ASTRAEA_TEST_HAS_GLOO) GTEST_SKIP() << "this build has no c10d Gloo group (the GPU host's LibTorch)";
  const std::string gen =
      "generate --model tiny --weights random --frames 3 --height 16 --width 16 --steps 3 "
      "--prompt 'a red circle moving left on a gray background' --out ";
  ASSERT_EQ(run(gen + path("one.safetensors")).code, 0);
  auto r = run("launch --nproc 3 -- " + gen + path("u3.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 0] parallel: ulysses 3 on 3 ranks (gloo)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[rank 0] wrote "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("[rank 1] wrote "), std::string::npos) << "only rank 0 writes: " << r.out;
  EXPECT_LT(video_difference(path("u3.safetensors"), path("one.safetensors")), 1e-5);
  r = run("launch --nproc 6 -- " + gen + path("c2u3.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 0] parallel: cfg 2 x ulysses 3 on 6 ranks (gloo)"), std::string::npos) << r.out;
  EXPECT_LT(video_difference(path("c2u3.safetensors"), path("one.safetensors")), 1e-5);
  // Ring attention: 2 ranks pass keys and values round; 4 are CFG 2 x ring 2 (auto).
  r = run("launch --nproc 2 -- " + gen + path("r2.safetensors") + " --parallel ring=2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 0] parallel: ring 2 on 2 ranks (gloo)"), std::string::npos) << r.out;
  EXPECT_LT(video_difference(path("r2.safetensors"), path("one.safetensors")), 1e-5);
  r = run("launch --nproc 4 -- " + gen + path("c2r2.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 0] parallel: cfg 2 x ring 2 on 4 ranks (gloo)"), std::string::npos) << r.out;
  EXPECT_LT(video_difference(path("c2r2.safetensors"), path("one.safetensors")), 1e-5);
  // Token-wise under CFG parallelism: each rank keeps its own branch's caches.
  ASSERT_EQ(run(gen + path("one_b.safetensors") + " --budget 0.5 --dense-steps 1").code, 0);
  r = run("launch --nproc 2 -- " + gen + path("c2_b.safetensors") + " --budget 0.5 --dense-steps 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 0] parallel: cfg 2 on 2 ranks (gloo)"), std::string::npos) << r.out;
  EXPECT_LT(video_difference(path("c2_b.safetensors"), path("one_b.safetensors")), 1e-5);
  // The token-wise method with the tokens split: each of 3 ranks selects among its own 16 tokens,
  // as one process does with segments=3.
  ASSERT_EQ(
      run(gen + path("one_s3.safetensors") + " --method astraea:budget=0.5,dense_steps=1,segments=3").code,
      0);
  r = run("launch --nproc 3 -- " + gen + path("u3_b.safetensors") +
          " --method astraea:budget=0.5,dense_steps=1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_LT(video_difference(path("u3_b.safetensors"), path("one_s3.safetensors")), 1e-5);
  // A schedule with a skipped step, on CFG 2 x Ulysses 3 and on Ulysses 3 x ring 2 (6 shards).
  const auto sched = [&](const std::string& name, int segments) {
    std::ofstream(path(name)) << R"({"format": "astraea-schedule", "version": 2, "method": "astraea", )"
                              << R"("model": "tiny", "steps": 3, "budgets": [1, 0, 0.4], )"
                              << R"("selection": {"w_stale": 0.3, "segments": )" << segments << "}}";
    return " --schedule " + path(name);
  };
  ASSERT_EQ(run(gen + path("one_k3.safetensors") + sched("k3.json", 3)).code, 0);
  r = run("launch --nproc 6 -- " + gen + path("c2u3_k.safetensors") + sched("k.json", 1));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("skipped steps"), std::string::npos) << r.out;
  EXPECT_LT(video_difference(path("c2u3_k.safetensors"), path("one_k3.safetensors")), 1e-5);
  ASSERT_EQ(run(gen + path("one_k6.safetensors") + sched("k6.json", 6)).code, 0);
  r = run("launch --nproc 6 -- " + gen + path("u3r2_k.safetensors") + sched("k.json", 1) +
          " --parallel ulysses=3,ring=2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 0] parallel: ulysses 3 x ring 2 on 6 ranks (gloo)"), std::string::npos)
      << r.out;
  EXPECT_LT(video_difference(path("u3r2_k.safetensors"), path("one_k6.safetensors")), 1e-5);
  // Segments that the ranks do not divide: refused on every rank, nothing written.
  r = run("launch --nproc 3 -- " + gen + path("budget.safetensors") +
          " --method astraea:budget=0.5,segments=2");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("selection segments 2 must be 1 or a multiple of the 3 ranks"), std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(path("budget.safetensors")));
  // Layouts and token counts that do not fit: one line naming the numbers, nothing written.
  r = run("launch --nproc 3 -- " + gen + path("x.safetensors") + " --parallel cfg=2,ulysses=2");
  EXPECT_NE(r.out.find("--parallel 'cfg=2,ulysses=2' (cfg 2 x ulysses 2) uses 4 ranks, but 3 were launched"),
            std::string::npos)
      << r.out;
  r = run("launch --nproc 2 -- " + gen + path("x.safetensors") + " --parallel ulysses=2");
  EXPECT_NE(r.out.find("needs heads divisible by it; the model has 3"), std::string::npos) << r.out;
  r =
      run("launch --nproc 3 -- generate --model tiny --weights random --frames 2 --height 16 --width 16 "
          "--steps 2 "
          "--out " +
          path("x.safetensors"));
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("needs a token count divisible by 3; this video has 32"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(path("x.safetensors")));
}

// Ranks started as torchrun starts them (the test sets each one's environment), and rank 1 killed
// mid-run: rank 0 stops within 60 s with a one-line error naming the failed collective, and
// writes nothing.
TEST_F(Cli, ARankKilledMidRunStopsTheOthersWithOneLineAndWritesNothing) {
  if (!ASTRAEA_TEST_HAS_GLOO) GTEST_SKIP() << "this build has no c10d Gloo group (the GPU host's LibTorch)";
  const int port = astraea::parallel::free_local_port();
  const auto out = path("killed.safetensors");
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    std::string env;
    for (const auto& [k, v] : astraea::parallel::launch_variables(rank, 2, "127.0.0.1", port))
      env += k + "=" + v + " ";
    const std::string cmd =
        "exec env " + env + ASTRAEA_BENCH_BIN +
        " generate --model tiny --weights random --frames 5 --height 32 --width 32 --steps 200 "
        "--out " +
        out + " >" + path("rank" + std::to_string(rank) + ".txt") + " 2>&1";
    const pid_t pid = fork();
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    pids.push_back(pid);
  }
  const auto log = [&](int rank) {
    std::ifstream in(path("rank" + std::to_string(rank) + ".txt"));
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  // Once rank 0 has joined and begun, kill rank 1.
  for (int i = 0; i < 600 && log(0).find("parallel: cfg 2 on 2 ranks") == std::string::npos; ++i)
    usleep(100 * 1000);
  usleep(1000 * 1000);
  ::kill(pids[1], SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  int status = 0;
  waitpid(pids[1], &status, 0);
  // Rank 0 must stop by itself: polled, and killed after 60 s so that a hang fails the test.
  pid_t done = 0;
  while ((done = waitpid(pids[0], &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - killed < std::chrono::seconds(60))
    usleep(100 * 1000);
  if (done == 0) {
    ::kill(pids[0], SIGKILL);
    waitpid(pids[0], &status, 0);
    FAIL() << "rank 0 still ran 60 s after rank 1 was killed: " << log(0);
  }
  ASSERT_TRUE(WIFEXITED(status)) << log(0);
  EXPECT_EQ(WEXITSTATUS(status), 1) << log(0);
  const std::string text = log(0);
  const auto error = text.find("error: ");
  ASSERT_NE(error, std::string::npos) << text;
  const std::string line = text.substr(error);
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << "one line: " << line;
  EXPECT_NE(line.find("over 2 ranks (rank 0 here) failed: another rank stopped"), std::string::npos) << line;
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find("killed"), std::string::npos)
        << "a partial file: " << e.path();
}

TEST_F(Cli, ProfileStoresALatencyModelAndATrace) {
  const auto db = path("p.db"), trace = path("trace.json");
  const std::string small =
      "profile --model tiny --frames 2 --height 16 --width 16 --warmup 1 --min-reps 2 --max-reps 4 --max-seconds 1";
  auto r = run(small + " --budgets 1,0.5 --db " + db + " --trace " + trace);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("budget"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("0.50"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("timed with wall"), std::string::npos) << "a CPU run says its clock: " << r.out;
  // No device to trace on the CPU is not a warning; on a busy machine, noise may be.
  for (size_t at = r.out.find("warning"); at != std::string::npos; at = r.out.find("warning", at + 1)) {
    EXPECT_EQ(r.out.compare(at, 36, "warning: noise stayed above the 2.0%"), 0) << r.out;
  }
  // The latency model: one row per budget, with its dense reference and per-operation times.
  r = run("query latency --format csv --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  EXPECT_NE(r.out.find("tiny,2x16x16,cpu,1,one rank,0.5,"), std::string::npos) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'op_ms' AND op = 'attention'"), 2);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'op_ms' AND op = 'selection' "
                           "AND run_id IN (SELECT id FROM runs WHERE json_extract(config_json, '$.budget') = 0.5)"),
            1);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs WHERE git_revision = ''"), 0);
  // The trace opens as Chrome trace JSON with the engine's operations in it.
  std::ifstream in(trace);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.rfind("{\"displayTimeUnit\"", 0), 0u) << text.substr(0, 80);
  for (const char* op : {"\"attention\"", "\"scatter\"", "\"step 1\"", "\"block 5\""}) {
    EXPECT_NE(text.find(op), std::string::npos) << op;
  }
  // A second profile supersedes the first in the view.
  ASSERT_EQ(run(small + " --budgets 0.5 --db " + db).code, 0);
  r = run("query latency --format csv --db " + db);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs WHERE kind = 'profile'"), 3);

  expect_error(run(small + " --budgets 1,2 --db " + db), 2, "--budgets item '2'");
  expect_error(run(small + " --budgets 0 --db " + db), 2, "--budgets");
  expect_error(run(small + " --trace /nonexistent/t.json --db " + db), 2, "/nonexistent");
  expect_error(run("profile --model tiny --frames 2 --height 16 --width 16 --min-reps 5 --max-reps 2 --db " + db), 2,
               "--max-reps");
  expect_error(run_shell("ASTRAEA_CPU_THREADS=0 " + std::string(ASTRAEA_BENCH_BIN) + " methods"), 2,
               "ASTRAEA_CPU_THREADS: '0'");
  r = run_shell("ASTRAEA_CPU_THREADS=1 " + std::string(ASTRAEA_BENCH_BIN) + " " + small + " --budgets 0.5 --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(", cpu (1 thread on "), std::string::npos) << r.out;
}

// Processes that keep the CPUs busy beside a test: each spins until the test ends it, and ends
// itself after 10 minutes should the test die first.
class BusyProcesses {
 public:
  explicit BusyProcesses(int count) {
    for (int i = 0; i < count; ++i) {
      const pid_t pid = fork();
      if (pid == 0) {
        alarm(600);
        for (volatile uint64_t x = 0;; x = x + 1) {
        }
      }
      pids_.push_back(pid);
    }
  }
  ~BusyProcesses() {
    for (pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      int status = 0;
      waitpid(pid, &status, 0);
    }
  }

 private:
  std::vector<pid_t> pids_;
};

TEST_F(Cli, ProfileBesideBusyProcessesStoresALatencyModelThatGrows) {
  const auto db = path("busy.db");
  ::Run r;
  {
    BusyProcesses busy(2);  // as many as the CI machine has cores
    r =
        run("profile --model tiny --frames 4 --height 32 --width 32 --budgets 1,0.7,0.5,0.3 --warmup 1 "
            "--min-reps 5 "
            "--max-reps 40 --max-seconds 3 --db " +
            db);
  }
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("timed interleaved"), std::string::npos) << r.out;
  // The pool leaves the spinning processes their CPUs: a pool wider than the idle CPUs waits at each
  // barrier for a parked thread, and the budgets with most barriers, not most work, came out slowest.
  EXPECT_NE(r.out.find("busy with other work)"), std::string::npos) << r.out;
  auto store = astraea::db::Store::open(db);
  const auto rows = store.latency_rows("tiny", 4, 32, 32, "");
  ASSERT_EQ(rows.size(), 4u) << r.out;
  std::map<double, astraea::tuner::LatencyPoint> points;
  for (const auto& row : rows) {
    // Marked noisy exactly when the noise stayed at or above the 2% target, in the table too.
    EXPECT_EQ(row.noisy, row.noise >= 0.02) << "budget " << row.budget << ", noise " << row.noise;
    EXPECT_FALSE(row.inverted) << "budget " << row.budget << "\n" << r.out;
    EXPECT_GT(row.dense_step_ms, 0);
    points[row.budget] = {row.step_ms, row.noise};
  }
  const auto fit = astraea::tuner::fit_latency(points, rows.back().dense_step_ms);
  EXPECT_FALSE(fit.work_proportional) << fit.why << "\n" << r.out;
  EXPECT_GT(fit.model.slope_ms(), 0) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'noisy'"), 4);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A full disk, as a file-size limit makes one (writes past 2 KB fail with EFBIG; SIGXFSZ is
// ignored, as a full disk sends no signal): each writer fails with one line naming its file, the
// previous file stays whole, no partial or temporary file is left, and the store keeps its runs.
// The report is not here: it opens the store first (for writing), and that fails before the page.
TEST_F(Cli, AFullDiskLeavesThePreviousFileAndNoPartialOne) {
  const std::string limited = "trap '' XFSZ; ulimit -f 4; " + std::string(ASTRAEA_BENCH_BIN) + " ";
  auto only = [&](std::set<std::string> names) {
    std::set<std::string> found;
    for (const auto& e : fs::directory_iterator(dir_)) found.insert(e.path().filename().string());
    EXPECT_EQ(found, names) << "a partial or temporary file was left";
  };
  std::vector<std::string> outs{path("v.safetensors")};
  if (ASTRAEA_TEST_HAS_FFMPEG) outs.push_back(path("v.mp4"));
  // 4x32x32: the MP4 too is larger than the limit.
  const std::string gen = "generate --model tiny --weights random --frames 4 --height 32 --width 32 --steps 2";
  for (const auto& out : outs) {
    ASSERT_EQ(run(gen + " --out " + out).code, 0);
    const auto before = file_bytes(out);
    ASSERT_GT(before.size(), 4096u) << out;
    auto r = run_shell(limited + gen + " --seed 3 --out " + out);
    // After the sampling progress, one error line naming the file.
    EXPECT_EQ(r.code, 1) << r.out;
    const auto last = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
    EXPECT_EQ(last.rfind("error: " + out + ": ", 0), 0u) << r.out;
    EXPECT_NE(last.find("File too large"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("error: "), r.out.rfind("error: ")) << "one error line: " << r.out;
    EXPECT_EQ(file_bytes(out), before) << out;
  }
  std::set<std::string> names;
  for (const auto& out : outs) names.insert(fs::path(out).filename().string());
  only(names);

  // The store: it cannot even make its write-ahead log and shared-memory index; nothing is stored.
  const auto db = path("p.db");
  const std::string profile = "profile --model tiny --frames 2 --height 16 --width 16 --budgets 0.5 --warmup 1 "
                              "--min-reps 2 --max-reps 2 --db " + db;
  ASSERT_EQ(run(profile).code, 0);
  const auto runs = count_rows(db, "SELECT count(*) FROM runs");
  expect_error(run_shell(limited + profile), 1, db);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs"), runs);

  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

TEST_F(Cli, SweepResumesAfterAKillWithNoLostOrDuplicatedCell) {
  const auto db = path("s.db");
  std::ofstream(path("prompts.txt")) << "# two prompts\na red circle moving left on a gray background\n"
                                        "a blue square standing still on a black background\n";
  // VBench-proxy needs OpenCV, which the GPU host lacks: there the cells get fidelity scores only.
  const std::string metrics = ASTRAEA_TEST_HAS_OPENCV ? "both" : "psnr";
  const std::string sweep = std::string(ASTRAEA_BENCH_BIN) + " sweep --model tiny --weights random --steps 3 "
                            "--budgets 1,0.5 --seeds 0,1 --metrics " + metrics + " --prompts-file " +
                            path("prompts.txt") + " --db " + db;
  // 8 cells; kill -9 once two are stored.
  const int64_t stored = kill_when(sweep, db, "SELECT count(*) FROM runs", 2);
  ASSERT_GE(stored, 2);
  const int64_t before = count_rows(db, "SELECT count(*) FROM runs");
  ASSERT_LT(before, 8) << "the sweep finished before it was killed; the test needs slower cells";
  auto r = run(sweep.substr(sweep.find(" sweep") + 1));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("8 cells, " + std::to_string(8 - before) + " run, " + std::to_string(before) + " already"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs"), 8);
  EXPECT_EQ(count_rows(db, "SELECT count(DISTINCT cell_key) FROM runs"), 8);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs r WHERE NOT EXISTS "
                           "(SELECT 1 FROM measurements m WHERE m.run_id = r.id AND m.name = 'sample_s')"),
            0)
      << "every stored cell is whole";
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs WHERE json_extract(config_json, '$.method.budget') = 0.5"), 4);
  // Scores: fidelity against the dense cell of the same prompt and seed, VBench-proxy for all.
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements m JOIN runs r ON r.id = m.run_id WHERE m.name = 'psnr' "
                           "AND json_extract(r.config_json, '$.method.budget') = 0.5 AND m.value > 10"),
            4);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'psnr'"), 4) << "dense cells have none";
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'vbench_proxy_total'"),
            ASTRAEA_TEST_HAS_OPENCV ? 8 : 0);
}

TEST_F(Cli, ScoreReadsOurLayoutAndMp4AndRefusesCorruptFiles) {
  if (!ASTRAEA_TEST_HAS_OPENCV) GTEST_SKIP() << "VBench-proxy needs OpenCV (absent on the GPU host)";
  const auto a = path("a.safetensors"), b = path("b.safetensors"), db = path("score.db");
  const std::string gen = "generate --model tiny --weights random --steps 3 --prompt 'a red circle moving right on a "
                          "black background' --seed 2 ";
  ASSERT_EQ(run(gen + "--out " + a).code, 0);
  ASSERT_EQ(run(gen + "--budget 0.5 --dense-steps 1 --out " + b).code, 0);
  auto r = run("score --video " + b + " --reference " + a + " --prompt 'a red circle moving right on a black background' "
               "--db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* metric : {"psnr ", "ssim ", "temporal_flickering", "dynamic_degree", "motion_smoothness",
                             "adherence_colour", "vbench_proxy_total"}) {
    EXPECT_NE(r.out.find(metric), std::string::npos) << metric << " in " << r.out;
  }
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs WHERE kind = 'score'"), 1);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'psnr' AND value > 5"), 1);
  // Identical videos: infinite PSNR, said as such, and stored as such (never NaN).
  r = run("score --video " + a + " --reference " + a + " --metrics psnr --format json --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"psnr\": \"inf\""), std::string::npos) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'psnr' AND value > 1e308"), 1);
  if (ASTRAEA_TEST_HAS_FFMPEG) {
    ASSERT_EQ(run(gen + "--out " + path("a.mp4")).code, 0);
    r = run("score --video " + path("a.mp4"));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("vbench_proxy_total"), std::string::npos) << r.out;
  }
  // Bad inputs: one line naming the flag and file, exit 2, nothing stored.
  std::ofstream(path("junk.safetensors")) << "not a safetensors file";
  expect_error(run("score --video " + path("junk.safetensors") + " --db " + db), 1, "junk.safetensors");
  expect_error(run("score --video " + path("none.mp4")), 2, "none.mp4");
  expect_error(run("score --video " + a + " --metrics psnr"), 2, "--reference");
  expect_error(run("score --video " + a + " --metrics lpips"), 2, "--metrics 'lpips'");
  astraea::write_safetensors(path("other.safetensors"), {{"latents", astraea::DType::F32, {1}, std::vector<float>{0}.data()}}, {});
  expect_error(run("score --video " + path("other.safetensors")), 2, "no tensor 'video'");
  std::vector<float> bright(3 * 16 * 16 * 3, 2.0f);
  astraea::write_safetensors(path("bright.safetensors"), {{"video", astraea::DType::F32, {3, 16, 16, 3}, bright.data()}}, {});
  expect_error(run("score --video " + path("bright.safetensors")), 2, "outside [0, 1]");
  astraea::write_safetensors(path("small.safetensors"), {{"video", astraea::DType::F32, {3, 16, 16, 3}, std::vector<float>(3 * 16 * 16 * 3, 0.5f).data()}}, {});
  expect_error(run("score --video " + path("small.safetensors") + " --reference " + a), 2, "--reference");
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs"), 2);
}

TEST_F(Cli, SweepRefusesBadGridsBeforeAnyWork) {
  const auto db = path("bad.db");
  const std::string sweep = "sweep --model tiny --steps 2 --db " + db;
  std::ofstream(path("grid.json")) << R"({"prompts": ["a red circle moving left on a gray background"], "budget": [1]})";
  expect_error(run(sweep + " --grid " + path("grid.json")), 2, "unknown field 'budget'");
  std::ofstream(path("grid2.json")) << "{\"prompts\": ";
  expect_error(run(sweep + " --grid " + path("grid2.json")), 2, "is not JSON");
  expect_error(run(sweep + " --prompts-file " + path("none.txt")), 2, "none.txt");
  expect_error(run(sweep + " --prompt 'a red blob moving left on a gray background'"), 2, "blob");
  expect_error(run(sweep + " --prompt 'a red circle moving left on a gray background' --budgets 0.5,x"), 2,
               "--budgets item 'x'");
  expect_error(run(sweep + " --prompt 'a red circle moving left on a gray background' --sizes 8x32"), 2, "--sizes");
  expect_error(run(sweep + " --model wan2.1-1.3b --prompt 'a red circle moving left on a gray background'"), 2,
               "own text encoder");
  EXPECT_FALSE(fs::exists(db)) << "nothing was stored, not even an empty store";
}

TEST_F(Cli, QueryBestAndParetoOfAStudy) {
  const auto db = path("t.db");
  {
    auto store = astraea::db::Store::open(db);
    const int64_t study = store.create_or_get_study("s1", "{}");
    // (cost, fitness): (3, 0.8) is dominated by (2, 0.9); (2.5, 0.9) by (2, 0.9).
    const std::vector<std::pair<double, double>> trials = {{1, 0.5}, {2, 0.9}, {3, 0.8}, {0.5, 0.1}, {2.5, 0.9}};
    for (size_t i = 0; i < trials.size(); ++i) {
      const auto claim = store.claim_trial(study, "{\"g\":" + std::to_string(i) + "}", "w");
      store.complete_trial(claim.trial.id, trials[i].second, trials[i].first, 1.0, "cpu");
    }
    const auto pending = store.claim_trial(study, "{\"g\":99}", "w");  // running: in no view
    (void)pending;
  }
  auto r = run("query pareto --study s1 --format csv --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "number,predicted_cost,fitness,genome_json\r\n3,0.5,0.1,\"{\"\"g\"\":3}\"\r\n"
                   "0,1.0,0.5,\"{\"\"g\"\":0}\"\r\n1,2.0,0.9,\"{\"\"g\"\":1}\"\r\n");
  r = run("query best --study s1 --format csv --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\r\n1,0.9,2.0,"), std::string::npos) << r.out;
  expect_error(run("query pareto --db " + db), 2, "--study");
}

// A latency model for tiny at 2x16x16 on the CPU as `profile` stores it, made up so that searches
// are deterministic (CPU timings of a 64-token model are mostly noise): 5 ms + 95 ms x budget.
void store_made_up_latency(const std::string& db, const std::vector<double>& budgets, int frames = 2) {
  auto store = astraea::db::Store::open(db);
  for (double b : budgets) {
    astraea::db::RunRecord run;
    run.kind = "profile";
    run.device = "cpu";
    run.config_json = "{\"model\": \"tiny\", \"frames\": " + std::to_string(frames) + ", \"height\": 16, \"width\": 16, \"budget\": " +
                      std::to_string(b) + "}";
    run.measurements = {{"step_ms", "ms", 5 + 95 * b, std::nullopt, std::nullopt, "", "wall"}};
    store.add_run(run);
  }
}

TEST_F(Cli, TuneFallsBackToTheWorkProportionalModelWhenTheProfileIsInverted) {
  // The busy-machine profile that once stopped the demo: 0.5 and 0.3 timed during a load spike.
  const auto db = path("inverted.db");
  {
    auto store = astraea::db::Store::open(db);
    const std::vector<std::array<double, 3>> rows{
        {1.0, 428, 0.02}, {0.7, 313, 0.03}, {0.5, 5679, 0.147}, {0.3, 3826, 0.63}};
    for (const auto& [budget, ms, noise] : rows) {
      astraea::db::RunRecord run;
      run.kind = "profile";
      run.device = "cpu";
      run.config_json = "{\"model\": \"tiny\", \"frames\": 2, \"height\": 16, \"width\": 16, \"budget\": " +
                        std::to_string(budget) + "}";
      run.measurements = {{"step_ms", "ms", ms, std::nullopt, std::nullopt, "", "wall"},
                          {"step_noise", "", noise, std::nullopt, std::nullopt, "", "wall"},
                          {"dense_step_ms", "ms", 430, std::nullopt, std::nullopt, "", "wall"}};
      store.add_run(run);
    }
  }
  const auto r =
      run("tune --study inv --model tiny --frames 2 --height 16 --width 16 --weights random --steps 4 "
          "--target-speedup 1.5 --population 2 --generations 0 --prompt 'a red circle moving left on a gray "
          "background' --validation-count 0 --measure-repeats 0 --db " +
          db);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto at = r.out.find("warning: latency model tiny@2x16x16 on ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const auto line = r.out.substr(at, r.out.find('\n', at) - at);
  EXPECT_NE(line.find("budget 0.5 measured slower than budget 0.7"), std::string::npos) << line;
  EXPECT_NE(line.find("work-proportional model instead (dense step 430.0 ms x budget)"), std::string::npos)
      << line;
  EXPECT_EQ(count_rows(db,
                       "SELECT count(*) FROM studies WHERE name = 'inv' AND "
                       "json_extract(config_json, '$.latency_model_kind') = 'work-proportional'"),
            1);
  // The trials' predicted costs are the work-proportional ones: 430 ms x the sum of the budgets.
  auto store = astraea::db::Store::open(db);
  const auto trials = store.query("SELECT genome_json, predicted_cost FROM trials WHERE state = 'complete'");
  ASSERT_FALSE(trials.rows.empty());
  for (const auto& row : trials.rows) {
    const auto genome = nlohmann::json::parse(*row[0]).get<std::vector<double>>();
    double sum = 0;
    for (double b : genome) sum += b;
    EXPECT_NEAR(std::stod(*row[1]), 430.0 * sum, 1e-6) << *row[0];
  }
}

// profile launched on 2 ranks: rank 0 alone stores a latency model keyed by world size and
// layout, beside the one-rank one, with the collectives attributed to 'comm'; tune
// --latency-model PRESET@FxHxW@2 tunes on it, for schedules that select per rank.
TEST_F(Cli, ProfileOnTwoRanksStoresItsOwnLatencyModelThatTuneTargets) {
  if (!ASTRAEA_TEST_HAS_GLOO) GTEST_SKIP() << "this build has no c10d Gloo group (the GPU host's LibTorch)";
  const auto db = path("ranks.db"), trace = path("ranks.json"), exported = path("ranks_schedule.json");
  const std::string profile =
      "profile --model tiny --frames 2 --height 16 --width 16 --warmup 1 --min-reps 2 --max-reps 4 "
      "--max-seconds 1 "
      "--budgets 1,0.5 --db " +
      db;
  ASSERT_EQ(run(profile).code, 0);
  auto r = run("launch --nproc 2 -- " + profile + " --parallel ring=2 --trace " + trace);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 0] parallel: ring 2 on 2 ranks (gloo)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("[rank 1] tiny, 2x16x16"), std::string::npos) << "rank 0 alone reports: " << r.out;
  r = run("query latency --format csv --db " + db);
  EXPECT_NE(r.out.find("tiny,2x16x16,cpu,1,one rank,0.5,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tiny,2x16x16,cpu,2,ring 2,0.5,"), std::string::npos) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs WHERE json_extract(config_json, '$.world_size') = 2"),
            2)
      << "one run per budget, from rank 0 alone";
  EXPECT_GT(
      count_rows(db,
                 "SELECT count(*) FROM measurements m JOIN runs r ON r.id = m.run_id WHERE m.op = 'comm' AND "
                 "json_extract(r.config_json, '$.world_size') = 2"),
      0);
  EXPECT_EQ(count_rows(db,
                       "SELECT count(*) FROM measurements m JOIN runs r ON r.id = m.run_id WHERE m.op = "
                       "'comm' AND json_extract(r.config_json, '$.world_size') IS NULL"),
            0);
  EXPECT_TRUE(fs::exists(trace));
  r =
      run("tune --study two --model tiny --frames 2 --height 16 --width 16 --weights random --steps 4 "
          "--target-speedup 1.2 --population 2 --generations 0 --prompt 'a red circle moving left on a gray "
          "background' --validation-count 0 --measure-repeats 0 --latency-model tiny@2x16x16@2 --export " +
          exported + " --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(count_rows(db,
                       "SELECT count(*) FROM studies WHERE name = 'two' AND json_extract(config_json, "
                       "'$.world_size') = 2 AND json_extract(config_json, '$.latency_model') = "
                       "'tiny@2x16x16 on 2 ranks'"),
            1);
  std::ifstream in(exported);
  EXPECT_EQ(nlohmann::json::parse(in)["selection"]["segments"], 2);
  // The study was tuned for 2 ranks: resuming it for one is refused by name.
  r =
      run("tune --study two --model tiny --frames 2 --height 16 --width 16 --weights random --steps 4 "
          "--target-speedup 1.2 --population 2 --generations 0 --prompt 'a red circle moving left on a gray "
          "background' --validation-count 0 --measure-repeats 0 --db " +
          db);
  EXPECT_NE(r.out.find("exists in " + db + " with another world_size (2, now 1)"), std::string::npos)
      << r.out;
  // No profile on 8 ranks: named, nothing tuned.
  r =
      run("tune --study eight --model tiny --frames 2 --height 16 --width 16 --weights random --steps 4 "
          "--target-speedup 1.2 --prompt 'a red circle moving left on a gray background' --latency-model "
          "tiny@2x16x16@8 --db " +
          db);
  EXPECT_NE(r.code, 0) << r.out;
  expect_error(run("tune --study x --model tiny --target-speedup 2 --prompt 'a red circle moving left on a "
                   "gray background' --latency-model "
                   "tiny@2x16x16@two --db " +
                   db),
               2, "--latency-model ranks 'two' is not a count in [1, 4096]");
}

// sweep --nproc: a cell on 2 ranks runs under launch and is stored beside the one-rank cell, with
// the same video (CFG 2 of the tiny preset); a second sweep skips both; a world size the tokens do
// not divide fails in one line and stores nothing of that cell.
TEST_F(Cli, SweepRunsCellsOnSeveralRanks) {
  if (!ASTRAEA_TEST_HAS_GLOO) GTEST_SKIP() << "this build has no c10d Gloo group (the GPU host's LibTorch)";
  const auto db = path("nproc.db");
  fs::create_directories(path("videos"));
  const std::string sweep =
      "sweep --model tiny --weights random --frames 2 --height 16 --width 16 --steps 2 --metrics none "
      "--prompt 'a red circle moving left on a gray background' --videos " +
      path("videos") + " --db " + db;
  auto r = run(sweep + " --nproc 1,2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("sweep: 2 cells, 2 run"), std::string::npos) << r.out;
  auto store = astraea::db::Store::open(db);
  const auto rows = store.query(
      "SELECT coalesce(json_extract(config_json, '$.nproc'), 1), json_extract(config_json, '$.video') FROM "
      "runs "
      "ORDER BY 1");
  ASSERT_EQ(rows.rows.size(), 2u);
  EXPECT_EQ(*rows.rows[1][0], "2");
  EXPECT_LT(video_difference(*rows.rows[1][1], *rows.rows[0][1]), 1e-5);
  r = run(sweep + " --nproc 1,2");
  EXPECT_NE(r.out.find("sweep: 2 cells, 0 run, 2 already"), std::string::npos) << r.out;
  r = run(sweep + " --nproc 3");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("error: sweep: a cell on 3 ranks failed: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("needs a token count divisible by 3"), std::string::npos) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs"), 2);
  expect_error(run(sweep + " --nproc 1.5"), 2, "--nproc item");
  expect_error(run(sweep + " --nproc 2 --parallel ulysses=2"), 2,
               "needs heads divisible by it; the model has 3");
}

// The mixed genome: each step a token budget, a skip or a reusing step priced by a step-cost table;
// the study records it, and a trial with a reusing step exports "reuse" that generate runs.
TEST_F(Cli, TuneSearchesTheMixedGenomeAndItsSchedulesRun) {
  const auto db = path("mixed.db"), exported = path("mixed.json"), costs = path("costs.json");
  const std::string size = " --model tiny --frames 2 --height 16 --width 16";
  // No profile in the store: the step-cost table is the search's latency model too.
  std::ofstream(costs) << R"({"tokens": 16, "layers": 6, "dense_ms": 100, "reuse_ms": 0, "stand_in_ms": 2,
    "first_block_ms": 18, "pab_self_ms": 60, "pab_cross_ms": 90, "pab_both_ms": 55, "tokens_ms": {"0.5": 52}})";
  const std::string tune =
      "tune --study mixed" + size +
      " --weights random --steps 6 --target-speedup 3 --population 4 "
      "--generations 1 --prompt 'a red circle moving left on a gray background' --seeds 0 "
      "--fitness psnr --validation-count 0 --genome mixed --db " +
      db;
  expect_error(run(tune), 2, "--genome mixed needs --step-costs FILE");
  expect_error(run(tune + " --step-costs " + path("none.json")), 2, "--step-costs");
  auto r = run(tune + " --step-costs " + costs + " --export " + exported);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(
      count_rows(db,
                 "SELECT count(*) FROM studies WHERE json_extract(config_json, '$.genome.kind') = 'mixed' "
                 "AND json_extract(config_json, '$.genome.reuse_share') = 0.02"),
      1);
  // At 3x over 6 steps with 2 dense ones, the search must reuse or skip; some trial reuses.
  EXPECT_GE(count_rows(db, "SELECT count(*) FROM trials WHERE genome_json LIKE '%-1%'"), 1);
  // The budgets genome takes the same table; every trial's predicted cost is on its line (a guided
  // step is two calls: budget 0.5 costs 104 ms, dense 200 ms).
  r = run("tune --study plain" + size +
          " --weights random --steps 6 --target-speedup 2 --population 4 --generations 1 "
          "--prompt 'a red circle moving left on a gray background' --seeds 0 --fitness psnr "
          "--validation-count 0 --measure-repeats 0 --step-costs " +
          costs + " --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(count_rows(db,
                       "SELECT count(*) FROM studies WHERE json_extract(config_json, '$.latency_model') LIKE "
                       "'step costs %costs.json (%16 tokens%'"),
            2);
  const auto trials = astraea::db::Store::open(db).query(
      "SELECT t.genome_json, t.predicted_cost FROM trials t JOIN studies s ON s.id = t.study_id WHERE s.name "
      "= "
      "'plain' AND t.predicted_cost IS NOT NULL");
  ASSERT_GE(trials.rows.size(), 4u);
  for (const auto& row : trials.rows) {
    double expected = 0;  // the line through (0.5, 104) and (1, 200): 8 + 192 x budget a step
    for (double b : nlohmann::json::parse(*row[0])) expected += b > 0 ? 8 + 192 * b : 0;
    EXPECT_NEAR(std::stod(*row[1]), expected, 1e-6) << *row[0];
  }
  r = run("generate" + size + " --weights random --steps 6 --schedule " + exported + " --out " +
          path("m.safetensors"));
  ASSERT_EQ(r.code, 0) << r.out;
}

TEST_F(Cli, TuneSearchesResumesFromTheStoreAndExports) {
  const auto db = path("tune.db"), exported = path("best.json");
  const std::string size = " --model tiny --frames 2 --height 16 --width 16";
  store_made_up_latency(db, {1.0, 0.7, 0.5, 0.3});
  const std::string tune = "tune --study s1" + size + " --weights random --steps 6 --target-speedup 1.6 --population 4 "
                           "--generations 2 --prompt 'a red circle moving left on a gray background' --seeds 0 "
                           "--fitness psnr --validation-count 2 --db " + db;
  auto r = run(tune + " --export " + exported + " --save-videos " + path("heldout"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("on 2 held-out prompts"), std::string::npos) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs WHERE kind = 'validation'"), 1);
  // The held-out check: the best against the uniform schedule of equal predicted cost, and whole
  // sampling runs timed (dense, best, uniform), all kept in the validation run.
  EXPECT_NE(r.out.find("same cost: PSNR"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("measured: dense"), std::string::npos) << r.out;
  for (const char* name : {"psnr", "uniform_psnr", "measured_dense_ms", "measured_ms", "measured_uniform_ms"}) {
    EXPECT_EQ(count_rows(db, std::string("SELECT count(*) FROM measurements m JOIN runs r ON r.id = m.run_id WHERE "
                                         "r.kind = 'validation' AND m.value > 0 AND m.name = '") + name + "'"), 1)
        << name;
  }
  // Recorded, not judged: how fast the tiny model runs here is the benchmarks' business, not a test's.
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM measurements WHERE name = 'measured_speedup' AND value > 0"), 1);
  // Two held-out prompts x one seed: dense, best and uniform videos, and their index.
  EXPECT_TRUE(fs::exists(path("heldout/index.json")));
  EXPECT_EQ(std::distance(fs::directory_iterator(path("heldout")), fs::directory_iterator{}), 2 * 3 + 1);
  EXPECT_NE(r.out.find("answered by the store"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Pareto front"), std::string::npos) << r.out;
  const int64_t trials = count_rows(db, "SELECT count(*) FROM trials WHERE state = 'complete'");
  EXPECT_GE(trials, 4);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM trials WHERE state <> 'complete'"), 0);
  // The same study again: the same search, every genome answered by the store, nothing evaluated.
  r = run(tune);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(", 0 evaluated now, " + std::to_string(trials) + " answered by the store;"), std::string::npos) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM trials"), trials);
  // Its trials do not hold for other videos: another step count or other weights is refused.
  std::string other_steps = tune;
  other_steps.replace(other_steps.find("--steps 6"), 9, "--steps 8");
  expect_error(run(other_steps), 2, "with another steps");
  std::string other_weights = tune;
  const char* src = std::getenv("ASTRAEA_SOURCE_DIR");
  other_weights.replace(other_weights.find("--weights random"), 16,
                        "--weights " + (fs::path(src ? src : ".") / "assets" / "tiny.safetensors").string());
  expect_error(run(other_weights), 2, "with another weights_digest");
  // The exported schedule runs, and the store knows it.
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM exported_schedules"), 1);
  r = run("generate --model tiny --weights random --frames 2 --height 16 --width 16 --steps 6 --prompt 'a red circle "
          "moving left on a gray background' --schedule " + exported + " --out " + path("tuned.safetensors"));
  EXPECT_EQ(r.code, 0) << r.out;
  r = run("query best --study s1 --format csv --db " + db);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
  // export: the best trial again, or a chosen one; both carry their provenance.
  r = run("export --study s1 --trial 0 --out " + path("t0.json") + " --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream t0(path("t0.json"));
  const std::string t0_text((std::istreambuf_iterator<char>(t0)), std::istreambuf_iterator<char>());
  EXPECT_NE(t0_text.find("\"study\": \"s1\""), std::string::npos) << t0_text;
  EXPECT_NE(t0_text.find("\"trial\": \"0\""), std::string::npos) << t0_text;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM exported_schedules"), 2);
  expect_error(run("export --study nope --out " + path("n.json") + " --db " + db), 2, "--study nope");
  expect_error(run("export --study s1 --trial 999 --out " + path("n.json") + " --db " + db), 2, "--trial 999");
  // Refusals: no latency model for the size, an impossible target, two targets.
  expect_error(run("tune --study s2 --model tiny --frames 4 --height 16 --width 16 --target-speedup 2 --prompt 'a red "
                   "circle moving left on a gray background' --db " + db), 2, "no latency model");
  expect_error(run("tune --study s3" + size + " --steps 6 --dense-steps 6 --target-speedup 3 --prompt 'a red circle "
                   "moving left on a gray background' --db " + db), 2, "cannot be met");
  expect_error(run(tune + " --target-compute 0.5"), 2, "exactly one");
  expect_error(run("tune --study s4" + size + " --steps 6 --target-speedup 0.8 --prompt 'a red circle moving left on "
                   "a gray background' --db " + db), 2, "above dense");
}

TEST_F(Cli, TuneResumesAfterAKillWithNothingLostOrRepeated) {
  const auto db = path("tk.db");
  store_made_up_latency(db, {1.0, 0.5});
  const std::string tune = std::string(ASTRAEA_BENCH_BIN) + " tune --study k --model tiny --frames 2 --height 16 "
                           "--width 16 --weights random --steps 8 --target-speedup 1.5 --population 6 --generations 4 "
                           "--prompt 'a red circle moving left on a gray background' --seeds 0,1 --devices cpu,cpu "
                           "--validation-count 0 --db " + db;
  const int64_t done = kill_when(tune, db, "SELECT count(*) FROM trials WHERE state = 'complete'", 3);
  ASSERT_GE(done, 3);
  const int64_t before = count_rows(db, "SELECT count(*) FROM trials");
  auto r = run(tune.substr(tune.find(" tune") + 1));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM trials WHERE state <> 'complete'"), 0) << "the killed run's trials were taken over";
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM trials"), count_rows(db, "SELECT count(DISTINCT genome_json) FROM trials"));
  EXPECT_GE(count_rows(db, "SELECT count(*) FROM trials"), before);
  EXPECT_EQ(r.out.find("evaluated now, 0 answered"), std::string::npos) << "the first run's trials were reused: " << r.out;
}

// Names that carry markup (a model name, a command with quotes and </script>) are text to the
// reader: the page runs to its end without errors, shows them escaped, and no element they spell
// is created (an onerror handler would retitle the page).
TEST_F(Cli, ReportShowsMarkupInNamesAsText) {
  if (std::system("command -v chromium >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no chromium (scripts/test.sh installs it; the GPU host has none)";
  }
  const auto db = path("h.db"), report = path("h.html");
  const std::string evil = "tiny<img src=x onerror=\"document.title='pwned'\">";
  {
    auto store = astraea::db::Store::open(db);
    for (double b : {1.0, 0.5}) {
      astraea::db::RunRecord r;
      r.kind = "sweep-cell";
      r.device = "cpu";
      r.cell_key = "cell-" + std::to_string(b);
      r.config_json = nlohmann::json{{"model", evil}, {"frames", 8}, {"height", 32}, {"width", 48}, {"seed", 0},
                                     {"prompt", "a red circle </script><b>moving</b> left"},
                                     {"method", {{"budget", b}}}, {"command", "sweep --note '\"</script>'"}}
                          .dump();
      r.measurements = {{"sample_s", "s", b == 1.0 ? 4.0 : 2.0}, {"vbench_proxy_total", "", 0.9}};
      if (b < 1) r.measurements.push_back({"psnr", "dB", 30.0});
      store.add_run(r);
    }
  }
  auto r = run("report --db " + db + " --out " + report);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto dom = run_shell("chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=5000 --dump-dom file://" +
                             report + " 2>/dev/null");
  EXPECT_NE(dom.out.find("data-done=\"1\""), std::string::npos) << "the page script ran to its end";
  EXPECT_NE(dom.out.find("data-errors=\"0\""), std::string::npos) << dom.out.substr(0, 400);
  EXPECT_NE(dom.out.find("tiny&lt;img src=x"), std::string::npos) << "the model name shown as text";
  EXPECT_EQ(dom.out.find("<img src=\"x\""), std::string::npos) << "an element made from a name";
  EXPECT_EQ(dom.out.find("pwned</title>"), std::string::npos);
}

// The report as a reader meets it: opened by headless Chromium, every chart drawn, no console
// errors, every video playable, and a screenshot.
TEST_F(Cli, ReportOpensInABrowserWithEveryChartAndVideo) {
  if (std::system("command -v chromium >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no chromium (scripts/test.sh installs it; the GPU host has none)";
  }
  const auto db = path("r.db"), report = path("report.html"), shot = path("report.png");
  const std::string size = " --model tiny --frames 3 --height 16 --width 16 --weights random";
  const std::string prompt = " --prompt 'a red circle moving left on a gray background'";
  ASSERT_EQ(run("profile --model tiny --frames 3 --height 16 --width 16 --budgets 1,0.5 --warmup 0 --min-reps 1 "
                "--max-reps 2 --db " + db).code, 0);
  // The tuner reads the newest latency model: a made-up one, since a measured one on a busy machine
  // can come out falling with the budget, which tune rightly refuses.
  store_made_up_latency(db, {1.0, 0.5}, 3);
  ASSERT_EQ(run("sweep" + size + prompt + " --steps 3 --budgets 1,0.5 --videos " + dir_.string() + " --db " + db).code, 0);
  auto r = run("tune --study s" + size + prompt + " --steps 3 --dense-steps 1 --target-speedup 1.2 --population 2 "
               "--generations 1 --validation-count 0 --db " + db + " --export " + path("t.json"));
  ASSERT_EQ(r.code, 0) << r.out;
  r = run("report --db " + db + " --out " + report);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("1 video pairs"), std::string::npos) << r.out;
  EXPECT_LT(fs::file_size(report), 20u << 20);
  const std::string chromium = "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
                               "--virtual-time-budget=5000 ";
  const auto dom = run_shell(chromium + "--dump-dom file://" + report + " 2>/dev/null");
  EXPECT_NE(dom.out.find("data-done=\"1\""), std::string::npos) << "the page script ran to its end";
  EXPECT_NE(dom.out.find("data-errors=\"0\""), std::string::npos) << dom.out.substr(0, 400);
  EXPECT_NE(dom.out.find("data-charts=\"7\""), std::string::npos)
      << "methods (PSNR, VBench-proxy), pareto, convergence, schedule, ops, latency";
  size_t videos = 0, playable = 0;
  for (size_t at = dom.out.find("<video"); at != std::string::npos; at = dom.out.find("<video", at + 1)) {
    ++videos;
    const std::string tag = dom.out.substr(at, dom.out.find('>', at) - at);
    if (tag.find("data-can-play=\"probably\"") != std::string::npos || tag.find("data-can-play=\"maybe\"") != std::string::npos) ++playable;
  }
  EXPECT_EQ(videos, 3u) << "dense, accelerated and their difference heat map";
  EXPECT_EQ(playable, videos);
  EXPECT_NE(dom.out.find("difference (black: equal"), std::string::npos);
  run_shell(chromium + "--window-size=1200,2600 --screenshot=" + shot + " file://" + report + " 2>/dev/null");
  ASSERT_TRUE(fs::exists(shot));
  std::ifstream png(shot, std::ios::binary);
  char magic[4] = {};
  png.read(magic, 4);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");
  // --runs narrows the summary and videos to the cells named: the dense cell alone has no pair.
  const auto dense_cell = count_rows(db, "SELECT id FROM runs WHERE kind = 'sweep-cell' AND "
                                         "json_extract(config_json, '$.method.budget') = 1");
  r = run("report --runs " + std::to_string(dense_cell) + " --db " + db + " --out " + path("one.html"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("1 summary rows"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("0 video pairs"), std::string::npos) << r.out;
  expect_error(run("report --runs 3x --db " + db + " --out " + path("bad.html")), 2, "--runs item '3x'");
  EXPECT_FALSE(fs::exists(path("bad.html")));
  // --no-difference leaves the heat map out.
  ASSERT_EQ(run("report --no-difference --db " + db + " --out " + path("plain.html")).code, 0);
  std::ifstream plain(path("plain.html"));
  const std::string plain_html((std::istreambuf_iterator<char>(plain)), std::istreambuf_iterator<char>());
  size_t plain_videos = 0;
  for (size_t at = plain_html.find("<video"); at != std::string::npos; at = plain_html.find("<video", at + 1)) ++plain_videos;
  EXPECT_EQ(plain_videos, 2u);
  // An empty store still gives a valid page that says what is missing.
  astraea::db::Store::open(path("empty.db"));
  ASSERT_EQ(run("report --db " + path("empty.db") + " --out " + path("empty.html")).code, 0);
  const auto empty = run_shell(chromium + "--dump-dom file://" + path("empty.html") + " 2>/dev/null");
  EXPECT_NE(empty.out.find("data-errors=\"0\""), std::string::npos);
  EXPECT_NE(empty.out.find("Missing: summary"), std::string::npos);
  expect_error(run("report --db " + path("none.db") + " --out " + path("x.html")), 2, "none.db");
  expect_error(run("report --db " + db + " --out " + path("x.pdf")), 2, "--out");
  expect_error(run("report --db " + db + " --study nope --out " + path("x.html")), 2, "--study nope");
}

// A worker waiting on another's trial takes it over when that worker dies, instead of waiting forever.
TEST_F(Cli, AWaitingWorkerTakesOverTheTrialsOfOneThatDied) {
  const auto db = path("dies.db"), log = path("b.log");
  store_made_up_latency(db, {1.0, 0.5}, 3);
  const std::string tune = std::string(ASTRAEA_BENCH_BIN) + " tune --study dies --model tiny --frames 3 --height 16 "
                           "--width 16 --weights random --steps 16 --target-speedup 1.5 --population 6 --generations 0 "
                           "--prompt 'a red circle moving left on a gray background' --validation-count 0 "
                           "--measure-repeats 0 --db " + db;
  auto start = [](const std::string& command) {
    const pid_t child = fork();
    if (child == 0) {
      execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    return child;
  };
  // A claims the first generation; B, the same seeded search, finds every genome claimed and waits.
  const pid_t a = start(tune + " >/dev/null 2>&1");
  for (int i = 0; i < 600 && (!fs::exists(db) || count_rows(db, "SELECT count(*) FROM trials") < 6); ++i) usleep(50 * 1000);
  ASSERT_EQ(count_rows(db, "SELECT count(*) FROM trials"), 6) << "A never claimed its first generation";
  const pid_t b = start(tune + " > " + log + " 2>&1");
  usleep(1500 * 1000);
  ::kill(a, SIGKILL);
  int status = 0;
  waitpid(a, &status, 0);  // reaped: a zombie would still answer kill(pid, 0)
  const int64_t left = count_rows(db, "SELECT count(*) FROM trials WHERE state <> 'complete'");
  // B must finish on its own; a minute is ample (each evaluation takes well under a second).
  int b_status = -1;
  for (int i = 0; i < 1200 && waitpid(b, &b_status, WNOHANG) == 0; ++i) usleep(50 * 1000);
  if (waitpid(b, &status, WNOHANG) == 0) {
    ::kill(b, SIGKILL);
    waitpid(b, &status, 0);
    FAIL() << "the waiting worker hung on the dead worker's trials";
  }
  std::ifstream in(log);
  const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(b_status) && WEXITSTATUS(b_status) == 0) << out;
  EXPECT_GT(left, 0) << "A finished before it was killed; the test needs slower evaluations";
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM trials WHERE state <> 'complete'"), 0) << out;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM trials"), 6);
}

TEST_F(Cli, TwoTuneWorkersShareOneStudyWithoutRepeatingATrial) {
  const auto db = path("two.db");
  store_made_up_latency(db, {1.0, 0.5});
  const std::string tune = std::string(ASTRAEA_BENCH_BIN) + " tune --study shared --model tiny --frames 2 --height 16 "
                           "--width 16 --weights random --steps 6 --target-speedup 1.5 --population 4 --generations 2 "
                           "--prompt 'a red circle moving left on a gray background' --validation-count 0 --db " + db;
  // Both workers run the same seeded search: every genome is claimed by one and awaited by the other.
  const auto both = run_shell("(" + tune + " > " + path("a.log") + " 2>&1 & " + tune + " > " + path("b.log") +
                              " 2>&1 & wait)");
  ASSERT_EQ(both.code, 0) << both.out;
  std::ifstream a(path("a.log")), b(path("b.log"));
  const std::string out_a((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
  const std::string out_b((std::istreambuf_iterator<char>(b)), std::istreambuf_iterator<char>());
  EXPECT_NE(out_a.find("best: fitness"), std::string::npos) << out_a;
  EXPECT_NE(out_b.find("best: fitness"), std::string::npos) << out_b;
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM trials WHERE state <> 'complete'"), 0);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM trials"), count_rows(db, "SELECT count(DISTINCT genome_json) FROM trials"));
  // Every trial was evaluated by exactly one of them.
  auto evaluated = [](const std::string& s) {
    const auto at = s.find(" evaluated now");
    return at == std::string::npos ? -1 : std::stoll(s.substr(s.rfind(' ', at - 1) + 1));
  };
  EXPECT_EQ(evaluated(out_a) + evaluated(out_b), count_rows(db, "SELECT count(*) FROM trials")) << out_a << out_b;
  // The two found the same best: the same search, its fitnesses shared through the store.
  auto best_line = [](const std::string& s) { return s.substr(s.find("best: fitness"), s.find('\n', s.find("best: fitness")) - s.find("best: fitness")); };
  EXPECT_EQ(best_line(out_a), best_line(out_b));
}
