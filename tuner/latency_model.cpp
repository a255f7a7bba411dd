#include "tuner/latency_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <set>
#include <stdexcept>

#include "engine/schedule.h"

namespace astraea::tuner {
namespace {

// The least-squares line through POINTS: (intercept, slope). Two points or more.
std::pair<double, double> least_squares(const std::map<double, double>& points) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = static_cast<double>(points.size());
  for (const auto& [x, y] : points) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double b = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  return {(sy - b * sx) / n, b};
}

void check_points(const std::map<double, double>& points) {
  if (points.empty()) throw std::invalid_argument("the latency model has no measured budgets");
  for (const auto& [b, ms] : points) {
    if (!(b > 0 && b <= 1) || !(ms > 0)) {
      throw std::invalid_argument("the latency model needs budgets in (0, 1] with positive times, got " +
                                  std::to_string(b) + " -> " + std::to_string(ms) + " ms");
    }
  }
}

}  // namespace

LatencyModel::LatencyModel(std::map<double, double> points) {
  check_points(points);
  if (points.size() == 1) {
    b_ = points.begin()->second / points.begin()->first;
    return;
  }
  std::tie(a_, b_) = least_squares(points);
  if (b_ <= 0) {
    throw std::invalid_argument("the latency model does not grow with the budget (slope " +
                                std::to_string(b_) + " ms): re-profile on a quiet machine");
  }
}

LatencyModel LatencyModel::work_proportional(double dense_step_ms) {
  if (!(dense_step_ms > 0)) {
    throw std::invalid_argument("the work-proportional latency model needs a positive dense step, got " +
                                std::to_string(dense_step_ms) + " ms");
  }
  LatencyModel m;
  m.b_ = dense_step_ms;
  return m;
}

double LatencyModel::step_ms(double budget) const {
  if (budget == kReuseBudget) return reuse_ms_;
  if (budget <= 0) return 0.0;  // a skipped step reuses the last output
  return std::max(0.0, a_ + b_ * budget);
}

double LatencyModel::cost_ms(const Genome& genome) const {
  double total = 0;
  for (double b : genome) total += step_ms(b);
  return total;
}

namespace {

// How far the lower budget LO's median exceeds the higher budget HI's beyond both their standard
// deviations; positive for an inversion.
double excess_ms(const LatencyPoint& lo, const LatencyPoint& hi) {
  return lo.step_ms - hi.step_ms - (lo.noise * lo.step_ms + hi.noise * hi.step_ms);
}

// The (lower, higher) budget pair of the largest inversion, if any.
std::optional<std::pair<double, double>> worst_inversion(const std::map<double, LatencyPoint>& points) {
  std::optional<std::pair<double, double>> worst;
  double most = 0;
  for (auto lo = points.begin(); lo != points.end(); ++lo) {
    for (auto hi = std::next(lo); hi != points.end(); ++hi) {
      const double e = excess_ms(lo->second, hi->second);
      if (e > most) most = e, worst = std::make_pair(lo->first, hi->first);
    }
  }
  return worst;
}

}  // namespace

std::vector<double> inverted_budgets(const std::map<double, LatencyPoint>& points) {
  std::set<double> out;
  for (auto lo = points.begin(); lo != points.end(); ++lo) {
    for (auto hi = std::next(lo); hi != points.end(); ++hi) {
      if (excess_ms(lo->second, hi->second) > 0) {
        out.insert(lo->first);
        out.insert(hi->first);
      }
    }
  }
  return {out.begin(), out.end()};
}

LatencyFit fit_latency(const std::map<double, LatencyPoint>& points, double dense_step_ms) {
  std::map<double, double> medians;
  for (const auto& [b, p] : points) medians[b] = p.step_ms;
  check_points(medians);
  auto fallback = [&](const std::string& why) {
    return LatencyFit{LatencyModel::work_proportional(dense_step_ms), true, why};
  };
  char why[200];
  if (const auto worst = worst_inversion(points)) {
    std::snprintf(
        why, sizeof why, "budget %g measured slower than budget %g beyond their noise (%.1f against %.1f ms)",
        worst->first, worst->second, points.at(worst->first).step_ms, points.at(worst->second).step_ms);
    return fallback(why);
  }
  if (medians.size() >= 2) {
    const double slope = least_squares(medians).second;
    if (!(slope > 0)) {
      std::snprintf(why, sizeof why, "the measured times do not grow with the budget (slope %.3f ms)", slope);
      return fallback(why);
    }
  }
  return LatencyFit{LatencyModel(medians), false, ""};
}

}  // namespace astraea::tuner
