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

// A canned view (db/schema/004_views.sql) by name, with the values it binds; anything else must be
// a SELECT (or WITH ...) statement.
std::pair<std::string, std::vector<std::string>> view_sql(const QueryFlags& f) {
  if (f.what == "runs") return {"SELECT * FROM run_summary ORDER BY id", {}};
  if (f.what == "studies") return {"SELECT * FROM study_summary ORDER BY id", {}};
  if (f.what == "latency") {
    return {
        "SELECT model, size, device, world_size AS ranks, parallel, budget, step_ms, of_dense, noise, noisy, "
        "inverted, created_at FROM latency ORDER BY model, size, device, world_size, parallel, budget DESC",
        {}};
  }
  if (f.what == "trials" || f.what == "best" || f.what == "pareto") {
    if (f.study.empty()) throw UsageError("query " + f.what + " needs --study NAME");
    if (f.what == "trials") {
      return {
          "SELECT number, state, fitness, predicted_cost, wall_s, device, genome_json FROM study_trials "
          "WHERE study = ?1 ORDER BY number",
          {f.study}};
    }
    if (f.what == "best") {
      return {
          "SELECT number, fitness, predicted_cost, wall_s, device, genome_json FROM study_best WHERE study = "
          "?1",
          {f.study}};
    }
    return {
        "SELECT number, predicted_cost, fitness, genome_json FROM study_pareto WHERE study = ?1 "
        "ORDER BY predicted_cost, number",
        {f.study}};
  }
  return {f.what, {}};
}

void run(const QueryFlags& f) {
  const auto format = parse_row_format(f.format);
  // A query must not create a store: a mistyped --db would otherwise leave an empty file behind.
  require_existing_db(f.db);
  const auto store = db::Store::open(f.db);
  const auto [sql, params] = view_sql(f);
  const auto result = store.query(sql, params);
  write_rows(std::cout, Rows{result.columns, result.rows}, format);
}

}  // namespace

void register_query(CLI::App& app) {
  auto f = std::make_shared<QueryFlags>();
  auto* sub = app.add_subcommand(
      "query", "Read the store: canned views (runs, latency, studies, trials, best, pareto) or a SELECT");
  sub->add_option(
         "what", f->what,
         "runs | latency (the newest profile per model, size, card, ranks, layout and budget) | studies | "
         "trials, best, pareto (of --study) | \"SELECT ...\"")
      ->default_val("runs");
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  sub->add_option("--format", f->format, "table, csv or json")->default_val("table");
  sub->add_option("--study", f->study, "the study, for trials, best and pareto");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
