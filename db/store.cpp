#include "db/store.h"

#include <sqlite3.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "db/embedded.h"

namespace astraea::db {

namespace {

// The schema's history, in db/schema/ and embedded at build time: migration i (1-based) takes
// user_version i-1 to i. Append new files; never edit a shipped one, since files in the field
// were built by it.
const std::vector<std::string>& migrations() {
  static const std::vector<std::string> scripts = {
      std::string(embedded_file("001_base.sql")),
      std::string(embedded_file("002_exported_schedules.sql")),
      std::string(embedded_file("003_sweep_cells.sql")),
      std::string(embedded_file("004_views.sql")),
      std::string(embedded_file("005_profile_methods.sql")),
      std::string(embedded_file("006_world_size.sql")),
  };
  return scripts;
}

int read_user_version(const Database& db) {
  Statement statement = db.prepare("PRAGMA user_version");
  statement.step();
  return static_cast<int>(statement.column_int64(0));
}

TrialState trial_state_from_name(const std::string& name) {
  if (name == "pending") return TrialState::kPending;
  if (name == "running") return TrialState::kRunning;
  if (name == "complete") return TrialState::kComplete;
  return TrialState::kFailed;
}

constexpr const char* kTrialColumns =
    "id, study_id, number, genome_json, state, claimed_by, predicted_cost, fitness, wall_s, device";

Trial trial_from_row(const Statement& row) {
  Trial trial;
  trial.id = row.column_int64(0);
  trial.study_id = row.column_int64(1);
  trial.number = row.column_int64(2);
  trial.genome_json = row.column_text(3);
  trial.state = trial_state_from_name(row.column_text(4));
  trial.claimed_by = row.column_text(5);
  trial.predicted_cost = row.column_optional_double(6);
  trial.fitness = row.column_optional_double(7);
  trial.wall_s = row.column_optional_double(8);
  trial.device = row.column_text(9);
  return trial;
}

}  // namespace

int Store::latest_schema_version() { return static_cast<int>(migrations().size()); }

const std::string& Store::migration_sql(int version) {
  if (version < 1 || version > latest_schema_version()) {
    throw StoreError("no schema migration " + std::to_string(version) + " (this build knows 1.." +
                     std::to_string(latest_schema_version()) + ")");
  }
  return migrations()[static_cast<size_t>(version - 1)];
}

Store Store::open(const std::string& path, StoreOptions options) {
  Database db = Database::open(path, Database::Access::kReadWrite, options.busy_timeout_ms);
  // WAL lets readers run beside one writer and lets processes take turns writing cheaply. This
  // is the first statement to read the file, so a corrupt file fails here, naming the path.
  db.exec_retrying_busy("PRAGMA journal_mode = WAL");
  {
    Statement journal_mode = db.prepare("PRAGMA journal_mode");
    journal_mode.step();
    if (journal_mode.column_text(0) != "wal") {
      throw StoreError(path + ": cannot switch to WAL mode (journal_mode is " + journal_mode.column_text(0) +
                       ")");
    }
  }
  db.exec("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;");
  Store store(std::move(db), std::move(options));
  store.migrate();
  return store;
}

void Store::migrate() {
  const int latest = latest_schema_version();
  const auto refuse_if_newer = [&](int version) {
    if (version < 0) {  // fuzz_store found one: it indexed the migrations before their start
      throw StoreError(path() + ": schema version " + std::to_string(version) +
                       " is not one any astraea-bench writes (is this an Astraea store?)");
    }
    if (version > latest) {
      throw StoreError(path() + ": schema version " + std::to_string(version) +
                       " is newer than this build's " + std::to_string(latest) + "; upgrade astraea-bench");
    }
  };
  refuse_if_newer(read_user_version(db_));
  for (int version = read_user_version(db_) + 1; version <= latest; ++version) {
    // Each step is its own transaction, and re-reads the version inside it: another process may
    // have migrated the file between our read and our BEGIN.
    Transaction transaction(db_);
    const int current = read_user_version(db_);
    refuse_if_newer(current);
    if (current >= version) continue;
    try {
      db_.exec(migrations()[static_cast<size_t>(version - 1)]);
    } catch (const StoreError& error) {
      throw StoreError(std::string(error.what()) + " [while migrating to schema version " +
                       std::to_string(version) + "]");
    }
    db_.exec("PRAGMA user_version = " + std::to_string(version));
    transaction.commit();
  }
}

int Store::schema_version() const { return read_user_version(db_); }

int64_t Store::add_run(const RunRecord& run) {
  Transaction transaction(db_);
  Statement insert_run = db_.prepare(
      "INSERT INTO runs (kind, config_json, git_revision, seed, device, versions_json, status, cell_key) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  insert_run.bind_text(1, run.kind)
      .bind_text(2, run.config_json)
      .bind_text(3, run.git_revision)
      .bind_int64(4, static_cast<int64_t>(run.seed))
      .bind_text(5, run.device)
      .bind_text(6, run.versions_json)
      .bind_text(7, run.status)
      .bind_text_or_null(8, run.cell_key);
  insert_run.run();
  const int64_t run_id = db_.last_insert_rowid();

  Statement insert_measurement = db_.prepare(
      "INSERT INTO measurements (run_id, name, unit, value, step, block, op, source) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  for (const MeasurementRecord& m : run.measurements) {
    insert_measurement.reset();
    insert_measurement.bind_int64(1, run_id)
        .bind_text(2, m.name)
        .bind_text(3, m.unit)
        .bind_double(4, m.value)
        .bind_optional_int64(5, m.step)
        .bind_optional_int64(6, m.block)
        .bind_text_or_null(7, m.op)
        .bind_text(8, m.source);
    insert_measurement.run();
  }
  if (options_.before_run_commit_for_test) options_.before_run_commit_for_test();
  transaction.commit();
  return run_id;
}

std::optional<int64_t> Store::find_cell(const std::string& cell_key) const {
  Statement select = db_.prepare("SELECT id FROM runs WHERE cell_key = ?");
  select.bind_text(1, cell_key);
  if (!select.step()) return std::nullopt;
  return select.column_int64(0);
}

std::vector<MeasurementRecord> Store::measurements(int64_t run_id) const {
  Statement select = db_.prepare(
      "SELECT name, unit, value, step, block, op, source FROM measurements WHERE run_id = ? ORDER BY id");
  select.bind_int64(1, run_id);
  std::vector<MeasurementRecord> records;
  while (select.step()) {
    MeasurementRecord m;
    m.name = select.column_text(0);
    m.unit = select.column_text(1);
    m.value = select.column_double(2);
    m.step = select.column_optional_int64(3);
    m.block = select.column_optional_int64(4);
    m.op = select.column_text(5);
    m.source = select.column_text(6);
    records.push_back(std::move(m));
  }
  return records;
}

QueryResult Store::query(const std::string& select_sql, const std::vector<std::string>& params) const {
  // Two locks: the connection is opened read-only, so SQLite itself refuses any write, and the
  // statement is checked up front, so the caller gets a clear refusal rather than a write error.
  Database reader = Database::open(path(), Database::Access::kReadOnly, options_.busy_timeout_ms);
  Statement statement = reader.prepare(select_sql);
  if (!statement.is_readonly() || statement.column_count() == 0) {
    throw StoreError(path() + ": query() runs read-only SELECT statements only; refused \"" + select_sql +
                     "\"");
  }
  for (size_t i = 0; i < params.size(); ++i) statement.bind_text(static_cast<int>(i) + 1, params[i]);
  // What one query may cost (fuzz_query met a recursive CTE and zeroblob(1e9)): a value's size,
  // and the options' time and rows.
  sqlite3_limit(reader.handle(), SQLITE_LIMIT_LENGTH, 256 << 20);
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(options_.query_timeout_ms);
  if (options_.query_timeout_ms > 0) {
    sqlite3_progress_handler(
        reader.handle(), 10'000,
        [](void* at) { return Clock::now() > *static_cast<const Clock::time_point*>(at) ? 1 : 0; },
        const_cast<Clock::time_point*>(&deadline));
  }
  QueryResult result;
  for (int c = 0; c < statement.column_count(); ++c) result.columns.push_back(statement.column_name(c));
  try {
    while (statement.step()) {
      if (options_.query_max_rows > 0 && static_cast<int64_t>(result.rows.size()) >= options_.query_max_rows)
        throw StoreError(path() + ": the query returned more than " + std::to_string(options_.query_max_rows) +
                         " rows");
      std::vector<std::optional<std::string>> row;
      for (int c = 0; c < statement.column_count(); ++c) row.push_back(statement.column_optional_text(c));
      result.rows.push_back(std::move(row));
    }
  } catch (const StoreError&) {
    if (options_.query_timeout_ms > 0 && Clock::now() > deadline)
      throw StoreError(path() + ": the query ran past its " + std::to_string(options_.query_timeout_ms) + " ms");
    throw;
  }
  return result;
}

std::vector<LatencyRow> Store::latency_rows(const std::string& model, int64_t frames, int64_t height,
                                            int64_t width, const std::string& device,
                                            int64_t world_size) const {
  // Of several layouts on WORLD_SIZE ranks, the one with the fastest dense step (the measured best).
  Statement select = db_.prepare(
      "SELECT budget, step_ms, noise, dense_step_ms, noisy, inverted, device, parallel FROM latency "
      "WHERE model = ?1 AND frames = ?2 AND height = ?3 AND width = ?4 AND (?5 = '' OR device = ?5) "
      "AND world_size = ?6 AND parallel = (SELECT parallel FROM latency WHERE model = ?1 AND frames = ?2 AND "
      "height = ?3 AND width = ?4 AND (?5 = '' OR device = ?5) AND world_size = ?6 ORDER BY dense_step_ms "
      "LIMIT 1) "
      "ORDER BY run_id");
  select.bind_text(1, model)
      .bind_int64(2, frames)
      .bind_int64(3, height)
      .bind_int64(4, width)
      .bind_text(5, device)
      .bind_int64(6, world_size);
  std::map<double, LatencyRow> by_budget;  // of several cards, the newest run
  while (select.step()) {
    if (select.column_is_null(0)) continue;
    LatencyRow row;
    row.budget = select.column_double(0);
    row.step_ms = select.column_double(1);
    row.noise = select.column_optional_double(2).value_or(0.0);
    row.dense_step_ms = select.column_optional_double(3).value_or(0.0);
    row.noisy = select.column_double(4) != 0.0;
    row.inverted = select.column_double(5) != 0.0;
    row.device = select.column_text(6);
    row.parallel = select.column_text(7);
    by_budget[row.budget] = row;
  }
  std::vector<LatencyRow> rows;
  for (auto& [budget, row] : by_budget) rows.push_back(std::move(row));
  return rows;
}

int64_t Store::create_or_get_study(const std::string& name, const std::string& config_json) {
  Transaction transaction(db_);
  Statement insert =
      db_.prepare("INSERT INTO studies (name, config_json) VALUES (?, ?) ON CONFLICT (name) DO NOTHING");
  insert.bind_text(1, name).bind_text(2, config_json);
  insert.run();
  Statement select = db_.prepare("SELECT id FROM studies WHERE name = ?");
  select.bind_text(1, name);
  select.step();
  const int64_t id = select.column_int64(0);
  transaction.commit();
  return id;
}

std::optional<int64_t> Store::find_study(const std::string& name) const {
  Statement select = db_.prepare("SELECT id FROM studies WHERE name = ?");
  select.bind_text(1, name);
  if (!select.step()) return std::nullopt;
  return select.column_int64(0);
}

std::string Store::study_config(int64_t study_id) const {
  Statement select = db_.prepare("SELECT config_json FROM studies WHERE id = ?");
  select.bind_int64(1, study_id);
  if (!select.step()) throw StoreError(path() + ": no study with id " + std::to_string(study_id));
  return select.column_text(0);
}

Trial Store::read_trial(int64_t trial_id) const {
  Statement select = db_.prepare(std::string("SELECT ") + kTrialColumns + " FROM trials WHERE id = ?");
  select.bind_int64(1, trial_id);
  if (!select.step()) throw StoreError(path() + ": no trial with id " + std::to_string(trial_id));
  return trial_from_row(select);
}

TrialClaim Store::claim_trial(int64_t study_id, const std::string& genome_json, const std::string& worker) {
  std::string genome;
  try {
    genome = nlohmann::json::parse(genome_json).dump();  // Sorted keys, no whitespace.
  } catch (const nlohmann::json::exception& error) {
    throw StoreError(path() + ": genome is not valid JSON: " + error.what());
  }
  // BEGIN IMMEDIATE makes look-up-then-insert atomic across processes: only one writer at a time.
  Transaction transaction(db_);
  TrialClaim claim;
  Statement find = db_.prepare("SELECT id, state FROM trials WHERE study_id = ? AND genome_json = ?");
  find.bind_int64(1, study_id).bind_text(2, genome);
  if (find.step()) {
    const int64_t id = find.column_int64(0);
    if (find.column_text(1) == "pending") {
      Statement take = db_.prepare(
          "UPDATE trials SET state = 'running', claimed_by = ?, "
          "claimed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?");
      take.bind_text(1, worker).bind_int64(2, id);
      take.run();
      claim.claimed = true;
    }
    claim.trial = read_trial(id);
  } else {
    Statement insert = db_.prepare(
        "INSERT INTO trials (study_id, number, genome_json, state, claimed_by, claimed_at) "
        "VALUES (?1, (SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1), ?2, 'running', "
        "?3, "
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))");
    insert.bind_int64(1, study_id).bind_text(2, genome).bind_text(3, worker);
    insert.run();
    claim.trial = read_trial(db_.last_insert_rowid());
    claim.claimed = true;
  }
  transaction.commit();
  return claim;
}

void Store::complete_trial(int64_t trial_id, double fitness, double predicted_cost, double wall_s,
                           const std::string& device) {
  Transaction transaction(db_);
  Statement update = db_.prepare(
      "UPDATE trials SET state = 'complete', fitness = ?, predicted_cost = ?, wall_s = ?, device = ? "
      "WHERE id = ? AND state = 'running'");
  update.bind_double(1, fitness).bind_double(2, predicted_cost).bind_double(3, wall_s).bind_text(4, device);
  update.bind_int64(5, trial_id);
  update.run();
  if (db_.changes() != 1) {
    throw StoreError(path() + ": cannot complete trial " + std::to_string(trial_id) +
                     ": it does not exist or is not running");
  }
  transaction.commit();
}

void Store::fail_trial(int64_t trial_id) {
  Transaction transaction(db_);
  Statement update = db_.prepare("UPDATE trials SET state = 'failed' WHERE id = ? AND state = 'running'");
  update.bind_int64(1, trial_id);
  update.run();
  if (db_.changes() != 1) {
    throw StoreError(path() + ": cannot fail trial " + std::to_string(trial_id) +
                     ": it does not exist or is not running");
  }
  transaction.commit();
}

std::vector<Trial> Store::trials(int64_t study_id) const {
  Statement select =
      db_.prepare(std::string("SELECT ") + kTrialColumns + " FROM trials WHERE study_id = ? ORDER BY number");
  select.bind_int64(1, study_id);
  std::vector<Trial> result;
  while (select.step()) result.push_back(trial_from_row(select));
  return result;
}

int64_t Store::add_exported_schedule(int64_t study_id, int64_t trial_id, const std::string& path,
                                     const std::string& schedule_json) {
  Transaction transaction(db_);
  Statement insert = db_.prepare(
      "INSERT INTO exported_schedules (study_id, trial_id, path, schedule_json) VALUES (?, ?, ?, ?)");
  insert.bind_int64(1, study_id).bind_int64(2, trial_id).bind_text(3, path).bind_text(4, schedule_json);
  insert.run();
  const int64_t id = db_.last_insert_rowid();
  transaction.commit();
  return id;
}

}  // namespace astraea::db
