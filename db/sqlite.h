// Small RAII owners of SQLite handles: a connection, a prepared statement and a transaction.
//
// Every failure throws StoreError, whose message names the database file and carries SQLite's
// own error text, so "which file, and what did SQLite say" is always answered in one line.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace astraea::db {

/// Any failure of the store: "PATH: what we were doing: SQLite's error text".
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Statement;

/// One open connection to one SQLite file; closes it on destruction.
class Database {
 public:
  enum class Access { kReadWrite, kReadOnly };

  /// Opens PATH (created when kReadWrite and missing) with BUSY_TIMEOUT_MS of waiting on locks.
  static Database open(const std::string& path, Access access, int busy_timeout_ms);

  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  /// Runs one or more SQL statements that return no rows we need.
  void exec(const std::string& sql);
  /// Like exec(), but retries SQLITE_BUSY for up to the busy timeout: for statements whose lock
  /// conflicts SQLite reports at once instead of calling the busy handler (BEGIN IMMEDIATE in WAL
  /// recovery, switching a new file to WAL while another process does the same).
  void exec_retrying_busy(const std::string& sql);
  /// Compiles exactly one SQL statement; trailing SQL after it is refused.
  Statement prepare(const std::string& sql) const;
  /// The rowid of the last successful INSERT on this connection.
  int64_t last_insert_rowid() const;
  /// Rows changed by the last INSERT, UPDATE or DELETE on this connection.
  int changes() const;
  /// The file this connection was opened on, as given to open().
  const std::string& path() const { return path_; }
  /// How long a statement waits on another connection's lock before SQLITE_BUSY.
  int busy_timeout_ms() const { return busy_timeout_ms_; }
  sqlite3* handle() const { return db_; }

  /// Throws StoreError "PATH: WHAT: <SQLite's last error on this connection>".
  [[noreturn]] void fail(const std::string& what) const;

 private:
  Database(sqlite3* db, std::string path, int busy_timeout_ms)
      : db_(db), path_(std::move(path)), busy_timeout_ms_(busy_timeout_ms) {}
  sqlite3* db_ = nullptr;
  std::string path_;
  int busy_timeout_ms_ = 0;
};

/// A prepared statement with typed binds (1-based, as in SQLite) and columns (0-based).
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& bind_int64(int index, int64_t value);
  /// NaN binds as NULL (SQLite's rule), so a NOT NULL REAL column refuses it.
  Statement& bind_double(int index, double value);
  Statement& bind_text(int index, const std::string& value);
  Statement& bind_null(int index);
  Statement& bind_optional_int64(int index, const std::optional<int64_t>& value);
  /// Binds NULL for an empty string: for optional text columns.
  Statement& bind_text_or_null(int index, const std::string& value);

  /// Advances one row: true when a row is ready to read, false when the statement is done.
  bool step();
  /// Steps to completion, for statements that return no rows.
  void run();
  /// Rewinds the statement and clears its bindings, ready to bind and step again.
  void reset();

  /// True when the statement cannot change the database file (sqlite3_stmt_readonly).
  bool is_readonly() const;
  int column_count() const;
  std::string column_name(int index) const;
  bool column_is_null(int index) const;
  int64_t column_int64(int index) const;
  double column_double(int index) const;
  /// The column as text; NULL reads as "".
  std::string column_text(int index) const;
  std::optional<int64_t> column_optional_int64(int index) const;
  std::optional<double> column_optional_double(int index) const;
  std::optional<std::string> column_optional_text(int index) const;

 private:
  friend class Database;
  Statement(sqlite3_stmt* stmt, const Database* db) : stmt_(stmt), db_(db) {}
  [[noreturn]] void fail(const std::string& what) const;
  sqlite3_stmt* stmt_ = nullptr;
  const Database* db_ = nullptr;  // Not owned; statements never outlive their connection.
};

/// BEGIN IMMEDIATE on construction (retrying SQLITE_BUSY up to the busy timeout); the destructor
/// rolls back unless commit() ran, so an exception or early return leaves nothing half-written.
class Transaction {
 public:
  explicit Transaction(Database& db);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  void commit();

 private:
  Database& db_;
  bool open_ = false;
};

}  // namespace astraea::db
