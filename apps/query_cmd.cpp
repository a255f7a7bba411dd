// astraea-bench query: read-only access to the store, with canned views for the common questions.
#include <filesystem>
#include <iostream>

#include "apps/commands.h"
#include "apps/result_format.h"
#include "db/store.h"

namespace astraea::app {
namespace {

struct QueryFlags {
  std::string what = "runs", db = "astraea.db", format = "table", study;
};

// The canned views, by name; anything else must be a SELECT (or WITH ...) statement.
std::string view_sql(const QueryFlags& f) {
  if (f.what == "runs") {
    return "SELECT r.id, r.kind, r.created_at, r.device, r.seed, r.status, r.git_revision, "
           "(SELECT count(*) FROM measurements m WHERE m.run_id = r.id) AS measurements "
           "FROM runs r ORDER BY r.id";
  }
  if (f.what == "studies") {
    return "SELECT s.id, s.name, s.created_at, "
           "(SELECT count(*) FROM trials t WHERE t.study_id = s.id) AS trials, "
           "(SELECT max(t.fitness) FROM trials t WHERE t.study_id = s.id AND t.state = 'complete') AS best_fitness "
           "FROM studies s ORDER BY s.id";
  }
  if (f.what == "trials") {
    if (f.study.empty()) throw UsageError("query trials needs --study NAME");
    std::string quoted;
    for (char c : f.study) quoted += c == '\'' ? std::string("''") : std::string(1, c);
    return "SELECT t.number, t.state, t.fitness, t.predicted_cost, t.wall_s, t.device, t.genome_json "
           "FROM trials t JOIN studies s ON s.id = t.study_id WHERE s.name = '" + quoted + "' ORDER BY t.number";
  }
  return f.what;
}

void run(const QueryFlags& f) {
  const auto format = parse_row_format(f.format);
  // A query must not create a store: a mistyped --db would otherwise leave an empty file behind.
  if (!std::filesystem::exists(f.db)) throw UsageError("--db " + f.db + " does not exist");
  const auto store = db::Store::open(f.db);
  const auto result = store.query(view_sql(f));
  write_rows(std::cout, Rows{result.columns, result.rows}, format);
}

}  // namespace

void register_query(CLI::App& app) {
  auto f = std::make_shared<QueryFlags>();
  auto* sub = app.add_subcommand("query", "Read the store: canned views (runs, studies, trials) or a SELECT");
  sub->add_option("what", f->what, "runs | studies | trials | \"SELECT ...\"")->default_val("runs");
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  sub->add_option("--format", f->format, "table, csv or json")->default_val("table");
  sub->add_option("--study", f->study, "the study, for 'trials'");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
