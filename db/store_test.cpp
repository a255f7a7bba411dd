#include "db/store.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>

namespace astraea::db {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards; the store file lives inside it.
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "astraea_db_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "astraea.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  int64_t count(const std::string& select_count_sql) {
    QueryResult result = Store::open(path_).query(select_count_sql);
    return std::stoll(*result.rows.at(0).at(0));
  }

  fs::path dir_;
  std::string path_;
};

RunRecord sample_run(int index, int measurement_count) {
  RunRecord run;
  run.kind = "generate";
  run.config_json = R"({"steps": 20})";
  run.git_revision = "abc123";
  run.seed = 1000 + static_cast<uint64_t>(index);
  run.device = "cpu";
  run.versions_json = R"({"astraea": "0.1.0"})";
  for (int m = 0; m < measurement_count; ++m) {
    MeasurementRecord record;
    record.name = "kernel_time_ns";
    record.unit = "ns";
    record.value = 100.0 * m + index;
    record.step = m;
    if (m % 2 == 0) record.block = m / 2;
    record.op = m % 2 ? "attention" : "";
    record.source = "timer";
    run.measurements.push_back(record);
  }
  return run;
}

// Runs BODY in a forked child, which exits 0 if BODY returns and 1 if it throws. The child never
// touches the parent's connections and leaves through _exit, so no destructor closes them.
pid_t fork_child(const std::function<void()>& body) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    int code = 0;
    try {
      body();
    } catch (const std::exception& error) {
      std::cerr << "child " << getpid() << ": " << error.what() << "\n";
      code = 1;
    }
    _exit(code);
  }
  return pid;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(StoreTest, NewFileIsCreatedAtTheLatestSchemaInWalMode) {
  Store store = Store::open(path_);
  EXPECT_EQ(store.schema_version(), Store::latest_schema_version());
  EXPECT_GE(Store::latest_schema_version(), 2);
  QueryResult tables = store.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
  std::vector<std::string> names;
  for (const auto& row : tables.rows) names.push_back(*row.at(0));
  EXPECT_EQ(names,
            (std::vector<std::string>{"exported_schedules", "measurements", "runs", "studies", "trials"}));
  Database raw = Database::open(path_, Database::Access::kReadOnly, 1000);
  Statement journal_mode = raw.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(journal_mode.step());
  EXPECT_EQ(journal_mode.column_text(0), "wal");
  // Foreign keys are enforced: a schedule of a trial that does not exist is refused.
  EXPECT_THROW(store.add_exported_schedule(999, 999, "/tmp/s.json", "{}"), StoreError);
}

TEST_F(StoreTest, MigratesAVersion1FileAndKeepsItsRows) {
  {
    Database v1 = Database::open(path_, Database::Access::kReadWrite, 1000);
    v1.exec(Store::migration_sql(1));
    v1.exec("PRAGMA user_version = 1");
    v1.exec("INSERT INTO runs (kind, seed) VALUES ('profile', 7)");
  }
  Store store = Store::open(path_);
  EXPECT_EQ(store.schema_version(), Store::latest_schema_version());
  QueryResult runs = store.query("SELECT kind, seed FROM runs");
  ASSERT_EQ(runs.rows.size(), 1u);
  EXPECT_EQ(*runs.rows[0][0], "profile");
  EXPECT_EQ(*runs.rows[0][1], "7");
  // What v2 added is really there and usable.
  EXPECT_EQ(store.query("SELECT name FROM sqlite_master WHERE name = 'measurements_by_name'").rows.size(),
            1u);
  const int64_t study = store.create_or_get_study("migrated", "{}");
  const TrialClaim claim = store.claim_trial(study, R"({"k": 1})", "w");
  EXPECT_GT(store.add_exported_schedule(study, claim.trial.id, "/tmp/s.json", R"({"blocks": []})"), 0);
  // v3: the old run has no cell; a new cell run is found by its key and cannot be stored twice.
  EXPECT_FALSE(store.find_cell("anything").has_value());
  RunRecord cell;
  cell.kind = "sweep-cell";
  cell.cell_key = R"({"budget":0.5,"seed":1})";
  const int64_t id = store.add_run(cell);
  EXPECT_EQ(store.find_cell(cell.cell_key), id);
  EXPECT_THROW(store.add_run(cell), StoreError);
  EXPECT_EQ(store.query("SELECT COUNT(*) FROM runs").rows[0][0], "2");
}

TEST_F(StoreTest, RefusesAFileWithANewerSchema) {
  {
    Database newer = Database::open(path_, Database::Access::kReadWrite, 1000);
    newer.exec("PRAGMA user_version = 7");
  }
  try {
    Store::open(path_);
    FAIL() << "a newer schema was accepted";
  } catch (const StoreError& error) {
    EXPECT_EQ(std::string(error.what()),
              path_ + ": schema version 7 is newer than this build's " + std::to_string(Store::latest_schema_version()) + "; upgrade astraea-bench");
  }
}

// Found by fuzz_store: a negative user_version made the migration loop index before its list.
TEST_F(StoreTest, RefusesAFileWithANegativeSchemaVersion) {
  {
    Database odd = Database::open(path_, Database::Access::kReadWrite, 1000);
    odd.exec("PRAGMA user_version = -5");
  }
  try {
    Store::open(path_);
    FAIL() << "a negative schema version was accepted";
  } catch (const StoreError& error) {
    EXPECT_EQ(std::string(error.what()),
              path_ + ": schema version -5 is not one any astraea-bench writes (is this an Astraea store?)");
  }
}

TEST_F(StoreTest, AddRunWritesTheRunAndItsMeasurements) {
  Store store = Store::open(path_);
  RunRecord run = sample_run(3, 4);
  run.seed = UINT64_MAX;  // Round-trips through SQLite's signed integer bit-for-bit.
  const int64_t id = store.add_run(run);
  const std::vector<MeasurementRecord> read = store.measurements(id);
  ASSERT_EQ(read.size(), 4u);
  EXPECT_EQ(read[1].name, "kernel_time_ns");
  EXPECT_EQ(read[1].value, 103.0);
  EXPECT_EQ(read[1].step, 1);
  EXPECT_EQ(read[1].block, std::nullopt);
  EXPECT_EQ(read[1].op, "attention");
  EXPECT_EQ(read[2].block, 1);
  QueryResult row =
      store.query("SELECT seed, status, op FROM runs JOIN measurements ON run_id = runs.id LIMIT 1");
  EXPECT_EQ(static_cast<uint64_t>(std::stoll(*row.rows[0][0])), UINT64_MAX);
  EXPECT_EQ(*row.rows[0][1], "complete");
  EXPECT_EQ(row.rows[0][2], std::nullopt);  // An empty op is stored as NULL.
}

// The latency model is the newest profile of each (card, model, size, budget): a rerun replaces
// its older twin, and a size with the same token count, another card or another budget does not.
TEST_F(StoreTest, TheNewestProfileOfEachCardModelSizeAndBudgetIsTheLatencyModel) {
  Store store = Store::open(path_);
  auto profile = [&](const std::string& device, int frames, int height, int width, double budget) {
    RunRecord run;
    run.kind = "profile";
    run.device = device;
    run.config_json = nlohmann::json{{"model", "tiny"}, {"frames", frames}, {"height", height}, {"width", width},
                                     {"tokens", frames * height * width / 16}, {"budget", budget}}.dump();
    return store.add_run(run);
  };
  profile("cardA", 16, 64, 64, 0.5);                  // replaced by the rerun below
  const int64_t rerun = profile("cardA", 16, 64, 64, 0.5);
  const int64_t same_tokens = profile("cardA", 16, 32, 128, 0.5);
  const int64_t other_card = profile("cardB", 16, 64, 64, 0.5);
  const int64_t other_budget = profile("cardA", 16, 64, 64, 1.0);
  RunRecord generate = sample_run(1, 0);
  store.add_run(generate);
  const auto rows = store.query("SELECT run_id FROM newest_profiles ORDER BY run_id");
  std::vector<int64_t> ids;
  for (const auto& row : rows.rows) ids.push_back(std::stoll(*row[0]));
  EXPECT_EQ(ids, (std::vector<int64_t>{rerun, same_tokens, other_card, other_budget}));
}

// Profiles name their method (v5); older rows have none and are ASTRAEA's. The latency model is
// ASTRAEA's budgets only; method_latency has every method's step.
TEST_F(StoreTest, TheLatencyModelIsAstraeasBudgetsAndMethodLatencyHasEveryMethod) {
  Store store = Store::open(path_);
  auto profile = [&](nlohmann::json config, double step_ms) {
    RunRecord run;
    run.kind = "profile";
    run.device = "cardA";
    config.update({{"model", "tiny"}, {"frames", 16}, {"height", 64}, {"width", 64}});
    run.config_json = config.dump();
    run.measurements = {{"step_ms", "ms", step_ms, std::nullopt, std::nullopt, "", "t"},
                        {"dense_step_ms", "ms", 10.0, std::nullopt, std::nullopt, "", "t"}};
    return store.add_run(run);
  };
  const int64_t old_row = profile({{"budget", 0.5}}, 6);  // before v5: no method
  const int64_t named = profile({{"budget", 0.3}, {"method", "astraea"}}, 4);
  const int64_t other =
      profile({{"budget", nullptr}, {"method", "dense"}, {"method_params", nlohmann::json::object()}}, 10);
  const auto latency = store.query("SELECT run_id, budget, of_dense FROM latency ORDER BY run_id");
  ASSERT_EQ(latency.rows.size(), 2u);
  EXPECT_EQ(std::stoll(*latency.rows[0][0]), old_row);
  EXPECT_EQ(std::stoll(*latency.rows[1][0]), named);
  EXPECT_DOUBLE_EQ(std::stod(*latency.rows[1][2]), 0.4);
  const auto all = store.query("SELECT run_id, method, budget FROM method_latency ORDER BY run_id");
  ASSERT_EQ(all.rows.size(), 3u);
  EXPECT_EQ(*all.rows[0][1], "astraea");
  EXPECT_EQ(std::stoll(*all.rows[2][0]), other);
  EXPECT_EQ(*all.rows[2][1], "dense");
  EXPECT_EQ(all.rows[2][2], std::nullopt);
}

TEST_F(StoreTest, AFailedMeasurementLeavesNoHalfRun) {
  Store store = Store::open(path_);
  RunRecord run = sample_run(0, 5);
  run.measurements.back().name = "";  // Violates CHECK (name <> '') after 4 rows were written.
  EXPECT_THROW(store.add_run(run), StoreError);
  RunRecord nan_run = sample_run(1, 2);
  nan_run.measurements[1].value = std::nan("");  // NaN binds as NULL: NOT NULL refuses it.
  EXPECT_THROW(store.add_run(nan_run), StoreError);
  EXPECT_EQ(count("SELECT COUNT(*) FROM runs"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM measurements"), 0);
  // The connection is still usable after the rollback.
  store.add_run(sample_run(2, 1));
  EXPECT_EQ(count("SELECT COUNT(*) FROM runs"), 1);
}

TEST_F(StoreTest, TwoProcessesWriteConcurrently) {
  Store::open(path_);  // Create the file first; the children still race on every write.
  constexpr int kRunsPerChild = 50, kMeasurementsPerRun = 6;
  std::vector<pid_t> children;
  for (int c = 0; c < 2; ++c) {
    children.push_back(fork_child([&] {
      Store store = Store::open(path_);
      for (int r = 0; r < kRunsPerChild; ++r) store.add_run(sample_run(r, kMeasurementsPerRun));
    }));
  }
  for (pid_t child : children) EXPECT_EQ(wait_exit_code(child), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM runs"), 2 * kRunsPerChild);
  EXPECT_EQ(count("SELECT COUNT(*) FROM measurements"), 2 * kRunsPerChild * kMeasurementsPerRun);
}

TEST_F(StoreTest, TwoProcessesOpeningANewFileAtOnceMigrateItOnce) {
  std::vector<pid_t> children;
  for (int c = 0; c < 2; ++c) {
    children.push_back(fork_child([&] { Store::open(path_).add_run(sample_run(c, 1)); }));
  }
  for (pid_t child : children) EXPECT_EQ(wait_exit_code(child), 0);
  EXPECT_EQ(Store::open(path_).schema_version(), Store::latest_schema_version());
  EXPECT_EQ(count("SELECT COUNT(*) FROM runs"), 2);
}

TEST_F(StoreTest, AProcessKilledBeforeCommitLeavesNoHalfRun) {
  Store::open(path_).add_run(sample_run(0, 2));
  const pid_t child = fork_child([&] {
    StoreOptions options;
    options.before_run_commit_for_test = [] { raise(SIGKILL); };
    Store::open(path_, options).add_run(sample_run(1, 10));
  });
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  Store store = Store::open(path_);
  EXPECT_EQ(count("SELECT COUNT(*) FROM runs"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM measurements"), 2);
  store.add_run(sample_run(2, 1));  // The dead writer's lock is gone.
  EXPECT_EQ(count("SELECT COUNT(*) FROM runs"), 2);
}

TEST_F(StoreTest, QueryReturnsRowsAndRefusesWrites) {
  Store store = Store::open(path_);
  store.add_run(sample_run(0, 3));
  QueryResult result = store.query("SELECT name, value, block FROM measurements ORDER BY id");
  EXPECT_EQ(result.columns, (std::vector<std::string>{"name", "value", "block"}));
  ASSERT_EQ(result.rows.size(), 3u);
  EXPECT_EQ(*result.rows[1][1], "100.0");
  EXPECT_EQ(result.rows[1][2], std::nullopt);

  for (const std::string sql :
       {"INSERT INTO runs (kind) VALUES ('x')", "UPDATE runs SET kind = 'y'", "DELETE FROM measurements",
        "DROP TABLE runs", "PRAGMA user_version = 9", "CREATE TABLE t (x)", "BEGIN IMMEDIATE"}) {
    try {
      store.query(sql);
      ADD_FAILURE() << "query() ran " << sql;
    } catch (const StoreError& error) {
      EXPECT_NE(std::string(error.what()).find("read-only"), std::string::npos) << error.what();
    }
  }
  EXPECT_THROW(store.query("SELECT 1; DELETE FROM runs"), StoreError);
  EXPECT_EQ(count("SELECT COUNT(*) FROM measurements"), 3);
  EXPECT_EQ(store.schema_version(), Store::latest_schema_version());
}

// A query's cost is bounded: its time and rows by the options, a value's size always.
TEST_F(StoreTest, QueryStopsAtItsTimeAndRowsAndAHugeValue) {
  Store::open(path_);
  StoreOptions bounded;
  bounded.query_timeout_ms = 200;
  bounded.query_max_rows = 1000;
  Store store = Store::open(path_, bounded);
  const std::string forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
  auto expect = [&](const std::string& sql, const std::string& needle) {
    try {
      store.query(sql);
      ADD_FAILURE() << "query() ran " << sql;
    } catch (const StoreError& error) {
      EXPECT_NE(std::string(error.what()).find(needle), std::string::npos) << error.what();
    }
  };
  expect(forever, "the query ran past its 200 ms");
  expect("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 5000) SELECT i FROM n",
         "more than 1000 rows");
  expect("SELECT length(zeroblob(1000000000))", "too big");
  EXPECT_EQ(store.query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 1000) SELECT i FROM n")
                .rows.size(),
            1000u);
}

TEST_F(StoreTest, CorruptFileAndMissingFolderGiveErrorsNamingThePath) {
  {
    std::ofstream out(path_, std::ios::binary);
    std::mt19937 random(42);
    for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(random() & 0xff));
  }
  try {
    Store::open(path_);
    FAIL() << "a corrupt file was opened";
  } catch (const StoreError& error) {
    EXPECT_NE(std::string(error.what()).find(path_), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("not a database"), std::string::npos) << error.what();
  }

  const std::string missing = (dir_ / "no_such_folder" / "astraea.db").string();
  try {
    Store::open(missing);
    FAIL() << "a file in a missing folder was opened";
  } catch (const StoreError& error) {
    EXPECT_NE(std::string(error.what()).find(missing), std::string::npos) << error.what();
  }
}

TEST_F(StoreTest, ALockedDatabaseFailsAfterTheBusyTimeout) {
  Store::open(path_);
  Database holder = Database::open(path_, Database::Access::kReadWrite, 1000);
  Transaction lock(holder);  // Holds the write lock for the rest of the test.
  StoreOptions options;
  options.busy_timeout_ms = 200;
  Store store = Store::open(path_, options);
  try {
    store.add_run(sample_run(0, 1));
    FAIL() << "wrote through another connection's write lock";
  } catch (const StoreError& error) {
    EXPECT_NE(std::string(error.what()).find(path_), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("locked"), std::string::npos) << error.what();
  }
}

TEST_F(StoreTest, ClaimTrialReturnsTheStoredFitnessOfACompletedGenome) {
  Store store = Store::open(path_);
  const int64_t study = store.create_or_get_study("budget-sweep", R"({"population": 8})");
  EXPECT_EQ(store.create_or_get_study("budget-sweep", "{}"), study);

  const TrialClaim first = store.claim_trial(study, R"({"b": 2, "a": [1, 2]})", "gpu0");
  ASSERT_TRUE(first.claimed);
  EXPECT_EQ(first.trial.state, TrialState::kRunning);
  EXPECT_EQ(first.trial.number, 0);
  EXPECT_EQ(first.trial.genome_json, R"({"a":[1,2],"b":2})");

  const TrialClaim while_running = store.claim_trial(study, R"({"a":[1,2],"b":2})", "gpu1");
  EXPECT_FALSE(while_running.claimed);
  EXPECT_EQ(while_running.trial.claimed_by, "gpu0");

  store.complete_trial(first.trial.id, 0.75, 12.5, 3.0, "H100");
  const TrialClaim again = store.claim_trial(study, R"({ "b" : 2, "a" : [1,2] })", "gpu1");
  EXPECT_FALSE(again.claimed);
  EXPECT_EQ(again.trial.state, TrialState::kComplete);
  EXPECT_EQ(again.trial.fitness, 0.75);
  EXPECT_EQ(again.trial.predicted_cost, 12.5);
  EXPECT_EQ(again.trial.device, "H100");
  EXPECT_THROW(store.complete_trial(first.trial.id, 1.0, 1.0, 1.0, "x"), StoreError);

  const TrialClaim second = store.claim_trial(study, R"({"a": [3]})", "gpu0");
  EXPECT_EQ(second.trial.number, 1);
  store.fail_trial(second.trial.id);
  EXPECT_FALSE(store.claim_trial(study, R"({"a": [3]})", "gpu1").claimed);
  EXPECT_THROW(store.claim_trial(study, "{not json", "gpu0"), StoreError);
  EXPECT_EQ(store.trials(study).size(), 2u);
}

TEST_F(StoreTest, TwoProcessesNeverClaimTheSameGenome) {
  constexpr int kGenomes = 40;
  const int64_t study = Store::open(path_).create_or_get_study("race", "{}");
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  std::vector<pid_t> children;
  for (int c = 0; c < 2; ++c) {
    children.push_back(fork_child([&, c] {
      close(pipe_fds[0]);
      Store store = Store::open(path_);
      const std::string worker = "worker" + std::to_string(c);
      for (int g = 0; g < kGenomes; ++g) {
        // The children spell each genome differently; canonical JSON makes them the same.
        const std::string genome = c == 0 ? "{\"g\": " + std::to_string(g) + ", \"x\": 1}"
                                          : "{\"x\":1,\"g\":" + std::to_string(g) + "}";
        const TrialClaim claim = store.claim_trial(study, genome, worker);
        if (!claim.claimed) continue;
        store.complete_trial(claim.trial.id, g * 0.5, 1.0, 0.01, worker);
        // Writes of at most PIPE_BUF bytes to a pipe are atomic, so the two children's reports
        // never interleave.
        if (write(pipe_fds[1], &g, sizeof g) != sizeof g) throw StoreError("pipe write failed");
      }
    }));
  }
  close(pipe_fds[1]);
  std::map<int, int> claims_per_genome;
  int g = 0;
  while (read(pipe_fds[0], &g, sizeof g) == sizeof g) ++claims_per_genome[g];
  close(pipe_fds[0]);
  for (pid_t child : children) EXPECT_EQ(wait_exit_code(child), 0);

  EXPECT_EQ(claims_per_genome.size(), static_cast<size_t>(kGenomes));
  for (const auto& [genome, claims] : claims_per_genome) EXPECT_EQ(claims, 1) << "genome " << genome;
  const std::vector<Trial> trials = Store::open(path_).trials(study);
  ASSERT_EQ(trials.size(), static_cast<size_t>(kGenomes));
  for (size_t i = 0; i < trials.size(); ++i) {
    EXPECT_EQ(trials[i].number, static_cast<int64_t>(i));
    EXPECT_EQ(trials[i].state, TrialState::kComplete);
  }
}

}  // namespace
}  // namespace astraea::db
