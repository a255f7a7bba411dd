// The Astraea store: one SQLite file holding runs with their measurements, and the tuner's
// studies, trials and exported schedules.
//
// Several processes (one per GPU) may open the same file and write at once: the file is in WAL
// mode, every write is one BEGIN IMMEDIATE transaction, and lock waits are bounded by a busy
// timeout. The schema is versioned through PRAGMA user_version and migrated on open.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "db/sqlite.h"

namespace astraea::db {

/// One self-describing metric value: a new metric needs no schema change.
struct MeasurementRecord {
  std::string name;                    ///< e.g. "kernel_time_ns"; must not be empty.
  std::string unit;                    ///< e.g. "ns", "dB", "" for unitless.
  double value = 0.0;                  ///< NaN is refused (SQLite stores it as NULL).
  std::optional<int64_t> step, block;  ///< Where in the denoising loop / model it was taken.
  std::string op;                      ///< The op measured, or "" for none (stored as NULL).
  std::string source;                  ///< What produced it: "cupti", "timer", "quality", ...
};

/// One run of the toolkit and everything it measured.
struct RunRecord {
  std::string kind;  ///< "generate", "profile", "sweep-cell", "trial", ...
  std::string config_json = "{}";
  std::string git_revision;
  uint64_t seed = 0;  ///< Stored bit-for-bit as SQLite's signed 64-bit integer.
  std::string device;
  std::string versions_json = "{}";
  std::string status = "complete";  ///< "running", "complete" or "failed".
  std::string cell_key;  ///< A sweep cell's canonical configuration, unique in the store; "" for none.
  std::vector<MeasurementRecord> measurements;
};

/// Rows of a read-only query, every value as text; SQL NULL is nullopt.
struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
};

/// One budget of a stored latency model: the newest `profile` run of its (card, model, size, budget).
struct LatencyRow {
  double budget = 1;
  double step_ms = 0;        ///< the median step
  double noise = 0;          ///< its relative noise (standard deviation over mean)
  double dense_step_ms = 0;  ///< the plain dense forward timed in the same profile (0: not stored)
  bool noisy = false;        ///< the noise stayed above the profile's target
  bool inverted = false;     ///< the profile found it out of order with another budget beyond the noise
  std::string device;
  std::string parallel;  ///< the layout on the profile's ranks ("one rank", "cfg 2 x ulysses 4")
};

/// A trial's lifecycle: pending (queued) -> running (claimed by a worker) -> complete | failed.
enum class TrialState { kPending, kRunning, kComplete, kFailed };

/// One evaluation of one genome in one study.
struct Trial {
  int64_t id = 0;
  int64_t study_id = 0;
  int64_t number = 0;       ///< 0, 1, 2, ... in claim order within the study.
  std::string genome_json;  ///< Canonical JSON (keys sorted, no whitespace).
  TrialState state = TrialState::kPending;
  std::string claimed_by;  ///< The worker that claimed it, "" if none.
  std::optional<double> predicted_cost, fitness, wall_s;
  std::string device;
};

/// The answer to claim_trial.
struct TrialClaim {
  Trial trial;
  /// True: this caller now owns the trial and must evaluate it, then complete_trial or fail_trial.
  /// False: the genome was already claimed; trial.state says whether it is complete (read
  /// trial.fitness, no need to evaluate), running elsewhere, or failed.
  bool claimed = false;
};

struct StoreOptions {
  /// How long a write waits for other writers before failing with a "database is locked" error.
  int busy_timeout_ms = 10'000;
  /// Bounds on one query(): its run time and its rows (0: none), beyond which it fails with a
  /// StoreError; a value longer than 256 MB always fails.
  int query_timeout_ms = 0;
  int64_t query_max_rows = 0;
  /// Test hook: called inside add_run after all rows are written and before COMMIT, so a test
  /// can kill the process mid-transaction. Leave empty in real use.
  std::function<void()> before_run_commit_for_test;
};

class Store {
 public:
  /// The schema version this build creates and understands.
  static int latest_schema_version();
  /// The SQL of migration VERSION (1-based): applying 1..N to an empty file gives schema N.
  static const std::string& migration_sql(int version);

  /// Opens (creating if missing) the store at PATH and migrates it to the latest schema. Refuses
  /// a file whose schema is newer than this build, a file that is not a database, or a missing
  /// folder, with a StoreError naming PATH.
  static Store open(const std::string& path, StoreOptions options = {});

  const std::string& path() const { return db_.path(); }
  /// The file's PRAGMA user_version.
  int schema_version() const;

  /// Writes the run and all its measurements in one transaction; returns the run's id.
  int64_t add_run(const RunRecord& run);
  /// The measurements of run RUN_ID, in insertion order.
  std::vector<MeasurementRecord> measurements(int64_t run_id) const;
  /// The run that holds sweep cell CELL_KEY, if one does.
  std::optional<int64_t> find_cell(const std::string& cell_key) const;

  /// Runs one SELECT through a separate read-only connection, with PARAMS bound as text to its
  /// parameters ?1, ?2, ... in order. SQL that could write (INSERT, UPDATE, DELETE, DROP, PRAGMA
  /// assignments, ...) is refused with a StoreError. The views it can read are in db/schema/.
  QueryResult query(const std::string& select_sql, const std::vector<std::string>& params = {}) const;

  /// The latency model of MODEL at FRAMES x HEIGHT x WIDTH on DEVICE ("": any card, the newest
  /// run of each budget winning) on WORLD_SIZE ranks (of several layouts, the one whose dense step
  /// was fastest), by ascending budget; empty when nothing was profiled.
  std::vector<LatencyRow> latency_rows(const std::string& model, int64_t frames, int64_t height,
                                       int64_t width, const std::string& device,
                                       int64_t world_size = 1) const;

  /// The id of study NAME, created with CONFIG_JSON if it does not exist yet.
  int64_t create_or_get_study(const std::string& name, const std::string& config_json);
  /// The id of study NAME, if it exists.
  std::optional<int64_t> find_study(const std::string& name) const;
  /// The configuration JSON study STUDY_ID was created with.
  std::string study_config(int64_t study_id) const;
  /// Atomically claims GENOME_JSON in STUDY_ID for WORKER, or reports who has it: a genome is
  /// never handed out twice, across processes. The genome is canonicalised first, so key order
  /// and whitespace do not make a new genome.
  TrialClaim claim_trial(int64_t study_id, const std::string& genome_json, const std::string& worker);
  /// Records the result of a claimed trial and marks it complete.
  void complete_trial(int64_t trial_id, double fitness, double predicted_cost, double wall_s,
                      const std::string& device);
  /// Marks a claimed trial failed (it is not handed out again).
  void fail_trial(int64_t trial_id);
  /// All trials of STUDY_ID, by number.
  std::vector<Trial> trials(int64_t study_id) const;
  /// One trial by its id; throws StoreError if there is none.
  Trial read_trial(int64_t trial_id) const;

  /// Records that TRIAL_ID's schedule was exported to PATH; returns the row's id.
  int64_t add_exported_schedule(int64_t study_id, int64_t trial_id, const std::string& path,
                                const std::string& schedule_json);

 private:
  Store(Database db, StoreOptions options) : db_(std::move(db)), options_(std::move(options)) {}
  void migrate();

  Database db_;
  StoreOptions options_;
};

}  // namespace astraea::db
