#include "engine/step_costs.h"

#include <fstream>
#include <stdexcept>

namespace astraea::engine {
namespace {

double positive(const nlohmann::json& j, const char* key, const std::string& file, bool zero_ok = false) {
  if (!j.contains(key) || !j.at(key).is_number()) {
    throw std::invalid_argument(file + ": field '" + key + "' is missing or not a number");
  }
  const double v = j.at(key).get<double>();
  if (!(v > 0 || (zero_ok && v == 0)))
    throw std::invalid_argument(file + ": field '" + key + "' is not a positive time");
  return v;
}

// A map of shares in (0, 1] (the JSON object's keys) to positive times, the field KEY of FILE.
std::map<double, double> shares(const nlohmann::json& j, const char* key, const char* what,
                                const std::string& file) {
  if (!j.is_object())
    throw std::invalid_argument(file + ": field '" + key + "' is not an object (" + what + " -> ms)");
  std::map<double, double> out;
  for (const auto& [share, ms] : j.items()) {
    double v = -1;
    try {
      v = std::stod(share);
    } catch (const std::exception&) {
    }
    if (!(v > 0 && v <= 1) || !ms.is_number() || !(ms.get<double>() > 0)) {
      throw std::invalid_argument(file + ": field '" + key + "' entry '" + share + "' is not a " + what +
                                  " in (0, 1] with a positive time");
    }
    out[v] = ms.get<double>();
  }
  return out;
}

}  // namespace

StepCosts StepCosts::read(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::invalid_argument(file + ": cannot be read");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(file + ": not JSON (" + std::string(e.what()) + ")");
  }
  return from_json(j, file);
}

StepCosts StepCosts::from_json(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) throw std::invalid_argument(file + ": not a JSON object");
  StepCosts c;
  c.model = j.value("model", "");
  c.device = j.value("device", "");
  c.tokens = static_cast<int64_t>(positive(j, "tokens", file));
  c.layers = static_cast<int64_t>(positive(j, "layers", file));
  c.dense_ms = positive(j, "dense_ms", file);
  c.reuse_ms = positive(j, "reuse_ms", file, true);
  c.stand_in_ms = positive(j, "stand_in_ms", file);
  c.first_block_ms = positive(j, "first_block_ms", file);
  c.pab_self_ms = positive(j, "pab_self_ms", file);
  c.pab_cross_ms = positive(j, "pab_cross_ms", file);
  c.pab_both_ms = positive(j, "pab_both_ms", file);
  if (!j.contains("tokens_ms") || !j.at("tokens_ms").is_object() || j.at("tokens_ms").empty()) {
    throw std::invalid_argument(file + ": field 'tokens_ms' is missing or empty (budget -> ms)");
  }
  c.tokens_ms = shares(j.at("tokens_ms"), "tokens_ms", "budget", file);
  c.tokens_ms.emplace(1.0, c.dense_ms);
  if (j.contains("toca_ms")) c.toca_ms = shares(j.at("toca_ms"), "toca_ms", "ratio", file);
  return c;
}

nlohmann::json StepCosts::to_json() const {
  nlohmann::json t = nlohmann::json::object();
  for (const auto& [b, ms] : tokens_ms) t[std::to_string(b)] = ms;
  nlohmann::json toca = nlohmann::json::object();
  for (const auto& [r, ms] : toca_ms) toca[std::to_string(r)] = ms;
  return {{"model", model},
          {"device", device},
          {"tokens", tokens},
          {"layers", layers},
          {"dense_ms", dense_ms},
          {"reuse_ms", reuse_ms},
          {"stand_in_ms", stand_in_ms},
          {"first_block_ms", first_block_ms},
          {"pab_self_ms", pab_self_ms},
          {"pab_cross_ms", pab_cross_ms},
          {"pab_both_ms", pab_both_ms},
          {"tokens_ms", t},
          {"toca_ms", toca}};
}

double StepCosts::call_ms(const std::string& a) const {
  auto number = [&](const std::string& text) {
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || text.empty())
      throw std::invalid_argument("step action '" + a + "' cannot be priced");
    return v;
  };
  if (a == "dense") return dense_ms;
  if (a == "reuse") return reuse_ms;
  const double l = static_cast<double>(layers);
  if (a.rfind("reuse@", 0) == 0) {
    const double k = number(a.substr(6));
    if (k < 0 || k > l) throw std::invalid_argument("step action '" + a + "' names a block past the model's");
    // Through (0, stand-in) and (1, first block) up to the dense call at every block.
    return k <= 1 ? stand_in_ms + k * (first_block_ms - stand_in_ms)
                  : first_block_ms + (k - 1) / (l - 1) * (dense_ms - first_block_ms);
  }
  if (a.rfind("pab:", 0) == 0) {
    const auto comma = a.find(',');
    if (comma == std::string::npos) throw std::invalid_argument("step action '" + a + "' cannot be priced");
    const double s = number(a.substr(4, comma - 4)) / l, c = number(a.substr(comma + 1)) / l;
    // Each share saves its part of the measured saving; both together save what the pair did.
    const double save_s = dense_ms - pab_self_ms, save_c = dense_ms - pab_cross_ms;
    const double overlap = save_s + save_c - (dense_ms - pab_both_ms);
    return dense_ms - s * save_s - c * save_c + std::min(s, c) * overlap;
  }
  if (a.rfind("tokens:", 0) == 0) {
    const double b = number(a.substr(7));
    if (!(b > 0 && b <= 1)) throw std::invalid_argument("step action '" + a + "' is not a budget in (0, 1]");
    auto hi = tokens_ms.lower_bound(b);
    if (hi->first == b) return hi->second;
    if (hi == tokens_ms.begin()) return hi->second * b / hi->first;  // below the lowest: proportional
    auto lo = std::prev(hi);
    return lo->second + (b - lo->first) / (hi->first - lo->first) * (hi->second - lo->second);
  }
  if (a.rfind("toca:", 0) == 0 && !toca_ms.empty()) {
    const double r = number(a.substr(5));
    if (toca_ms.size() == 1 || toca_ms.count(r))
      return toca_ms.count(r) ? toca_ms.at(r) : toca_ms.begin()->second;
    // The two measured ratios nearest R (the segment it lies on, or the end one past it).
    auto hi = toca_ms.lower_bound(r);
    if (hi == toca_ms.begin()) ++hi;
    if (hi == toca_ms.end()) --hi;
    const auto lo = std::prev(hi);
    return lo->second + (r - lo->first) / (hi->first - lo->first) * (hi->second - lo->second);
  }
  throw std::invalid_argument("step action '" + a + "' cannot be priced");
}

double StepCosts::run_ms(const std::vector<std::string>& step_actions) const {
  double total = 0;
  for (const auto& step : step_actions) {
    if (step == "skip") continue;
    size_t begin = 0;
    while (begin <= step.size()) {
      const size_t end = std::min(step.find('+', begin), step.size());
      total += call_ms(step.substr(begin, end - begin));
      begin = end + 1;
    }
  }
  return total;
}

}  // namespace astraea::engine
