#include "db/sqlite.h"

#include <sqlite3.h>

#include <cctype>
#include <chrono>
#include <thread>
#include <utility>

namespace astraea::db {

namespace {

std::string error_text(sqlite3* db) { return db ? sqlite3_errmsg(db) : "out of memory"; }

bool only_whitespace_or_comments(const char* sql) {
  // sqlite3_prepare_v2 leaves TAIL at the first byte after the statement; a second statement
  // there would be silently ignored, which is a trap for a query helper, so we refuse it.
  for (const char* p = sql; *p;) {
    if (std::isspace(static_cast<unsigned char>(*p)) || *p == ';') {
      ++p;
    } else if (p[0] == '-' && p[1] == '-') {
      while (*p && *p != '\n') ++p;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

// --- Database ---------------------------------------------------------------------------------

Database Database::open(const std::string& path, Access access, int busy_timeout_ms) {
  const int flags =
      (access == Access::kReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX;
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  // Construct the owner first: sqlite3_open_v2 hands back a handle even when it fails.
  Database db(raw, path, busy_timeout_ms);
  if (rc != SQLITE_OK) db.fail("cannot open the database file");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  return db;
}

Database::Database(Database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      path_(std::move(other.path_)),
      busy_timeout_ms_(other.busy_timeout_ms_) {}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    if (db_) sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
    busy_timeout_ms_ = other.busy_timeout_ms_;
  }
  return *this;
}

Database::~Database() {
  // close_v2 defers the close until any unfinalized statement is gone, so it cannot fail here.
  if (db_) sqlite3_close_v2(db_);
}

void Database::exec(const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : error_text(db_);
    sqlite3_free(message);
    throw StoreError(path_ + ": " + text + " (in: " + sql.substr(0, 80) + ")");
  }
}

void Database::exec_retrying_busy(const std::string& sql) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms_);
  while (true) {
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return;
    if ((rc & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() >= deadline) {
      fail("\"" + sql + "\" failed (waited up to " + std::to_string(busy_timeout_ms_) +
           " ms for other connections)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Statement Database::prepare(const std::string& sql) const {
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()) + 1, &raw, &tail) != SQLITE_OK) {
    fail("cannot prepare \"" + sql + "\"");
  }
  Statement statement(raw, this);
  if (raw == nullptr) throw StoreError(path_ + ": no SQL statement in \"" + sql + "\"");
  if (tail && !only_whitespace_or_comments(tail)) {
    throw StoreError(path_ + ": only one SQL statement at a time, but \"" + sql + "\" has more");
  }
  return statement;
}

int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
int Database::changes() const { return sqlite3_changes(db_); }

void Database::fail(const std::string& what) const {
  throw StoreError(path_ + ": " + what + ": " + error_text(db_));
}

// --- Statement --------------------------------------------------------------------------------

Statement::Statement(Statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), db_(other.db_) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
    db_ = other.db_;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::fail(const std::string& what) const {
  db_->fail(what + " (in \"" + std::string(sqlite3_sql(stmt_)) + "\")");
}

Statement& Statement::bind_int64(int index, int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) fail("cannot bind parameter");
  return *this;
}

Statement& Statement::bind_double(int index, double value) {
  if (sqlite3_bind_double(stmt_, index, value) != SQLITE_OK) fail("cannot bind parameter");
  return *this;
}

Statement& Statement::bind_text(int index, const std::string& value) {
  if (sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT) !=
      SQLITE_OK) {
    fail("cannot bind parameter");
  }
  return *this;
}

Statement& Statement::bind_null(int index) {
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) fail("cannot bind parameter");
  return *this;
}

Statement& Statement::bind_optional_int64(int index, const std::optional<int64_t>& value) {
  return value ? bind_int64(index, *value) : bind_null(index);
}

Statement& Statement::bind_text_or_null(int index, const std::string& value) {
  return value.empty() ? bind_null(index) : bind_text(index, value);
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // The statement must be reset before the connection can report a consistent error state,
  // but reset would overwrite the message, so capture it first.
  std::string message = error_text(db_->handle());
  sqlite3_reset(stmt_);
  throw StoreError(db_->path() + ": " + message + " (in \"" + std::string(sqlite3_sql(stmt_)) + "\")");
}

void Statement::run() {
  while (step()) {
  }
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

bool Statement::is_readonly() const { return sqlite3_stmt_readonly(stmt_) != 0; }
int Statement::column_count() const { return sqlite3_column_count(stmt_); }
std::string Statement::column_name(int index) const { return sqlite3_column_name(stmt_, index); }
bool Statement::column_is_null(int index) const { return sqlite3_column_type(stmt_, index) == SQLITE_NULL; }
int64_t Statement::column_int64(int index) const { return sqlite3_column_int64(stmt_, index); }
double Statement::column_double(int index) const { return sqlite3_column_double(stmt_, index); }

std::string Statement::column_text(int index) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, index));
  if (text == nullptr) return {};
  return std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_, index)));
}

std::optional<int64_t> Statement::column_optional_int64(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_int64(index);
}

std::optional<double> Statement::column_optional_double(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_double(index);
}

std::optional<std::string> Statement::column_optional_text(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_text(index);
}

// --- Transaction ------------------------------------------------------------------------------

Transaction::Transaction(Database& db) : db_(db) {
  // The busy handler already waits on most lock conflicts, but in WAL mode some SQLITE_BUSY
  // results (e.g. while another connection recovers the WAL index) skip it, so BEGIN is retried.
  db.exec_retrying_busy("BEGIN IMMEDIATE");
  open_ = true;
}

void Transaction::commit() {
  if (!open_) throw StoreError(db_.path() + ": commit of a transaction that is not open");
  db_.exec("COMMIT");
  open_ = false;
}

Transaction::~Transaction() {
  // A failed statement may already have rolled SQLite's transaction back; then there is nothing
  // to undo, and ROLLBACK's "no transaction is active" error is expected and ignored.
  if (open_ && !sqlite3_get_autocommit(db_.handle())) {
    sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

}  // namespace astraea::db
