#include "engine/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

#include "io/atomic_file.h"
#include "io/field_error.h"

namespace astraea {
namespace {

using nlohmann::json;
constexpr const char* kFormat = "astraea-schedule";
constexpr int kVersion = 2;  // 2 names the method; 1 (no `method`: ASTRAEA) still loads
constexpr const char* kMethod = "astraea";

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw std::runtime_error(where + ": " + what);
}

void only_fields(const json& j, const std::vector<std::string>& known, const std::string& where,
                 const std::string& object, int version) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      fail(where, "unknown field '" + object + it.key() + "' in version " + std::to_string(version));
    }
  }
}

}  // namespace

double TokenBudgetSchedule::compute_share() const {
  return budgets.empty() ? 0.0
                         : std::accumulate(budgets.begin(), budgets.end(), 0.0, [](double sum, double b) {
                             return sum + std::max(b, 0.0);
                           }) / static_cast<double>(budgets.size());
}

TokenBudgetSchedule uniform_schedule(const std::string& model, int64_t steps, double budget,
                                     int64_t dense_steps) {
  if (!(budget >= 0.0 && budget <= 1.0)) {
    throw FieldError("budget", std::to_string(budget) + " is not in [0, 1]");
  }
  if (dense_steps < 0 || dense_steps > steps) {
    throw FieldError("dense_steps",
                     std::to_string(dense_steps) + " is not in [0, " + std::to_string(steps) + "]");
  }
  TokenBudgetSchedule s;
  s.model = model;
  s.budgets.assign(static_cast<size_t>(steps), budget);
  std::fill(s.budgets.begin(), s.budgets.begin() + dense_steps, 1.0);
  s.provenance["source"] =
      "uniform budget " + std::to_string(budget) + " after " + std::to_string(dense_steps) + " dense steps";
  return s;
}

void validate_schedule(const TokenBudgetSchedule& s, const std::string& where, const std::string& model,
                       int64_t steps) {
  if (s.budgets.empty()) fail(where, "'budgets' is empty");
  for (size_t i = 0; i < s.budgets.size(); ++i) {
    const double b = s.budgets[i];
    if (!(b >= 0.0 && b <= 1.0) && b != kReuseBudget) {  // also rejects NaN
      fail(where,
           "budgets[" + std::to_string(i) + "] = " + std::to_string(b) + " is not in [0, 1] or \"reuse\"");
    }
  }
  if (s.budgets.front() == 0.0)
    fail(where, "budgets[0] is 0, but the first step has no earlier output to reuse");
  if (s.budgets.front() == kReuseBudget)
    fail(where, "budgets[0] is \"reuse\", but the first step has no earlier residual to reuse");
  if (!model.empty() && s.model != model) {
    fail(where, "schedule is for model '" + s.model + "', not '" + model + "'");
  }
  if (steps > 0 && s.steps() != steps) {
    fail(where, "schedule has " + std::to_string(s.steps()) + " steps, the run has " + std::to_string(steps));
  }
  if (!(s.selection.w_lse >= 0) || !(s.selection.w_stale >= 0)) fail(where, "selection weights must be >= 0");
  if (s.selection.tile < 1) fail(where, "'selection.tile' must be >= 1");
  if (s.selection.segments < 1) fail(where, "'selection.segments' must be >= 1");
  if (!(s.selection.min_frame_share >= 0 && s.selection.min_frame_share <= 1)) {
    fail(where, "'selection.min_frame_share' must be in [0, 1]");
  }
}

TokenBudgetSchedule read_schedule(const std::string& path, const std::string& model, int64_t steps) {
  std::ifstream in(path);
  if (!in) fail(path, "cannot open the schedule file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    std::string text = e.what();
    fail(path, "not valid JSON (" + text.substr(text.find("] ") + 2) + ")");
  }
  if (!j.is_object()) fail(path, "not a JSON object");
  // Not j.value("format", ""): it throws on a format that is not a string (found by fuzz_schedule).
  if (!j.contains("format") || j["format"] != kFormat)
    fail(path, "'format' must be \"" + std::string(kFormat) + "\"");
  if (!j.contains("version") || !j["version"].is_number_integer()) fail(path, "'version' must be an integer");
  const int version = j["version"].get<int>();
  if (version != 1 && version != kVersion) {
    fail(path, "'version' " + j["version"].dump() + " is not supported (this build reads versions 1 and " +
                   std::to_string(kVersion) + ")");
  }
  std::vector<std::string> fields{"format",  "version",   "model",     "steps",
                                  "budgets", "selection", "provenance"};
  if (version >= 2) fields.push_back("method");
  only_fields(j, fields, path, "", version);
  if (version >= 2) {
    if (!j.contains("method") || !j["method"].is_string()) fail(path, "'method' must be a string");
    if (j["method"] != kMethod) {
      fail(path, "'method' " + j["method"].dump() +
                     " has no per-step budget schedule (this build's schedules are " + kMethod + "'s)");
    }
  }
  TokenBudgetSchedule s;
  if (!j.contains("model") || !j["model"].is_string()) fail(path, "'model' must be a string");
  s.model = j["model"].get<std::string>();
  if (!j.contains("budgets") || !j["budgets"].is_array()) fail(path, "'budgets' must be an array of numbers");
  for (size_t i = 0; i < j["budgets"].size(); ++i) {
    const auto& b = j["budgets"][i];
    // JSON has no NaN: a writer that emitted one produced null, which is caught here.
    if (b == "reuse") {
      s.budgets.push_back(kReuseBudget);
      continue;
    }
    if (!b.is_number())
      fail(path, "budgets[" + std::to_string(i) + "] = " + b.dump() + " is not a number or \"reuse\"");
    s.budgets.push_back(b.get<double>());
  }
  if (!j.contains("steps") || !j["steps"].is_number_integer()) fail(path, "'steps' must be an integer");
  if (j["steps"].get<int64_t>() != s.steps()) {
    fail(path,
         "'steps' is " + j["steps"].dump() + " but 'budgets' has " + std::to_string(s.steps()) + " entries");
  }
  if (j.contains("selection")) {
    const auto& sel = j["selection"];
    if (!sel.is_object()) fail(path, "'selection' must be an object");
    only_fields(sel, {"w_lse", "w_stale", "tile", "min_frame_share", "reuse_kv", "segments"}, path,
                "selection.", version);
    if (sel.contains("reuse_kv") && !sel["reuse_kv"].is_boolean())
      fail(path, "'selection.reuse_kv' must be true or false");
    s.selection.reuse_kv = sel.value("reuse_kv", false);
    for (const char* k : {"w_lse", "w_stale", "min_frame_share"}) {
      if (sel.contains(k) && !sel[k].is_number())
        fail(path, std::string("'selection.") + k + "' must be a number");
    }
    for (const char* k : {"tile", "segments"}) {
      if (sel.contains(k) && !sel[k].is_number_integer())
        fail(path, std::string("'selection.") + k + "' must be an integer");
    }
    s.selection.w_lse = sel.value("w_lse", s.selection.w_lse);
    s.selection.w_stale = sel.value("w_stale", s.selection.w_stale);
    s.selection.tile = sel.value("tile", s.selection.tile);
    s.selection.min_frame_share = sel.value("min_frame_share", s.selection.min_frame_share);
    s.selection.segments = sel.value("segments", s.selection.segments);
  }
  if (j.contains("provenance")) {
    if (!j["provenance"].is_object()) fail(path, "'provenance' must be an object");
    for (auto it = j["provenance"].begin(); it != j["provenance"].end(); ++it) {
      s.provenance[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
    }
  }
  validate_schedule(s, path, model, steps);
  return s;
}

std::string schedule_json(const TokenBudgetSchedule& s) {
  json budgets = json::array();
  for (double b : s.budgets) budgets.push_back(b == kReuseBudget ? json("reuse") : json(b));
  json j{{"format", kFormat},
         {"version", kVersion},
         {"method", kMethod},
         {"model", s.model},
         {"steps", s.steps()},
         {"budgets", budgets},
         {"selection",
          {{"w_lse", s.selection.w_lse},
           {"w_stale", s.selection.w_stale},
           {"tile", s.selection.tile},
           {"min_frame_share", s.selection.min_frame_share},
           {"reuse_kv", s.selection.reuse_kv},
           {"segments", s.selection.segments}}},
         {"provenance", s.provenance}};
  return j.dump(2) + "\n";
}

std::string write_schedule(const std::string& path, const TokenBudgetSchedule& s) {
  validate_schedule(s, path);
  std::string text = schedule_json(s);
  const std::string error = write_file_atomically(path, text);
  if (error == "cannot open") fail(path, "cannot write (does the folder exist?)");
  if (!error.empty()) fail(path, error);
  return text;
}

}  // namespace astraea
