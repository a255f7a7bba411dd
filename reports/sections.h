// The report's sections that live in their own files (report.cpp gathers the rest): each reads
// the store, returns its part of the report's data, and adds a line to MISSING, with the command
// that would fill it, when the store cannot.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "db/store.h"

namespace astraea::reports {

/// The one-rank latency model with each budget's time per operation (latency_section.cpp).
nlohmann::json latency(const db::Store& store, nlohmann::json& missing);
/// Every method's sweep cells as quality against speedup, and quality at equal speed (peers.cpp);
/// with STEP_COSTS (a file, engine/step_costs.h) also priced on that table's model.
nlohmann::json peers(const db::Store& store, const std::string& step_costs, nlohmann::json& missing);
/// Speedup across world sizes (scaling.cpp).
nlohmann::json scaling(const db::Store& store, nlohmann::json& missing);

}  // namespace astraea::reports
