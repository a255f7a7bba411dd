// The report's sections that live in their own files (report.cpp gathers the rest): each reads
// the store, returns its part of the report's data, and adds a line to MISSING, with the command
// that would fill it, when the store cannot.
#pragma once

#include <nlohmann/json.hpp>

#include "db/store.h"

namespace astraea::reports {

/// The one-rank latency model with each budget's time per operation (latency_section.cpp).
nlohmann::json latency(const db::Store& store, nlohmann::json& missing);
/// Speedup across world sizes (scaling.cpp).
nlohmann::json scaling(const db::Store& store, nlohmann::json& missing);

}  // namespace astraea::reports
