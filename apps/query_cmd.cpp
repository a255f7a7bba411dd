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
  if (f.what == "latency") {
    // The latency model: the newest profile of each (model, size, card, budget).
    return "SELECT json_extract(r.config_json, '$.model') AS model, "
           "json_extract(r.config_json, '$.frames') || 'x' || json_extract(r.config_json, '$.height') || 'x' || "
           "json_extract(r.config_json, '$.width') AS size, r.device, "
           "json_extract(r.config_json, '$.budget') AS budget, m.value AS step_ms, "
           "m.value / d.value AS of_dense, n.value AS noise, r.created_at "
           "FROM runs r JOIN measurements m ON m.run_id = r.id AND m.name = 'step_ms' "
           "LEFT JOIN measurements d ON d.run_id = r.id AND d.name = 'dense_step_ms' "
           "LEFT JOIN measurements n ON n.run_id = r.id AND n.name = 'step_noise' "
           "WHERE r.id IN (" + db::newest_profile_ids_sql() + ") "
           "ORDER BY model, size, r.device, budget DESC";
  }
  if (f.what == "trials" || f.what == "best" || f.what == "pareto") {
    if (f.study.empty()) throw UsageError("query " + f.what + " needs --study NAME");
    const std::string trials = "FROM trials t JOIN studies s ON s.id = t.study_id WHERE s.name = " + db::sql_quote(f.study);
    if (f.what == "trials") {
      return "SELECT t.number, t.state, t.fitness, t.predicted_cost, t.wall_s, t.device, t.genome_json " + trials +
             " ORDER BY t.number";
    }
    if (f.what == "best") {
      return "SELECT t.number, t.fitness, t.predicted_cost, t.wall_s, t.device, t.genome_json " + trials +
             " AND t.state = 'complete' ORDER BY t.fitness DESC, t.predicted_cost ASC, t.number LIMIT 1";  // tuner::ranks_above
    }
    // Pareto front over (predicted cost: lower is better, fitness: higher is better): the complete
    // trials that no other complete trial beats on one and matches or beats on the other.
    return "WITH c AS (SELECT t.* " + trials + " AND t.state = 'complete') "
           "SELECT a.number, a.predicted_cost, a.fitness, a.genome_json FROM c a WHERE NOT EXISTS ("
           "SELECT 1 FROM c b WHERE b.predicted_cost <= a.predicted_cost AND b.fitness >= a.fitness "
           "AND (b.predicted_cost < a.predicted_cost OR b.fitness > a.fitness)) "
           "ORDER BY a.predicted_cost, a.number";
  }
  return f.what;
}

void run(const QueryFlags& f) {
  const auto format = parse_row_format(f.format);
  // A query must not create a store: a mistyped --db would otherwise leave an empty file behind.
  require_existing_db(f.db);
  const auto store = db::Store::open(f.db);
  const auto result = store.query(view_sql(f));
  write_rows(std::cout, Rows{result.columns, result.rows}, format);
}

}  // namespace

void register_query(CLI::App& app) {
  auto f = std::make_shared<QueryFlags>();
  auto* sub = app.add_subcommand(
      "query", "Read the store: canned views (runs, latency, studies, trials, best, pareto) or a SELECT");
  sub->add_option("what", f->what,
                  "runs | latency (the newest profile per model, size, card and budget) | studies | "
                  "trials, best, pareto (of --study) | \"SELECT ...\"")
      ->default_val("runs");
  sub->add_option("--db", f->db, "the store")->default_val("astraea.db");
  sub->add_option("--format", f->format, "table, csv or json")->default_val("table");
  sub->add_option("--study", f->study, "the study, for trials, best and pareto");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
