#include "quality/metric.h"

#include <algorithm>
#include <stdexcept>

#include "io/field_error.h"

namespace astraea::quality {

const std::vector<Metric>& metrics() {
  // The registration table: a new metric is one file and one line here.
  static const std::vector<Metric> table = {
      psnr_metric(),
      vbench_proxy_metric(),
  };
  return table;
}

const Metric& metric(const std::string& name, const char* field) {
  std::string known;
  for (const auto& m : metrics()) {
    if (m.name == name) return m;
    known += (known.empty() ? "" : ", ") + m.name;
  }
  throw FieldError(field, "'" + name + "' is not a metric (known: " + known + ", or both)");
}

MetricList parse_metrics(const std::string& text, const char* field) {
  if (text == "both") return {&metric("psnr"), &metric("vbench-proxy")};
  MetricList out;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string name = text.substr(begin, end - begin);
    if (name.empty()) throw FieldError(field, "'" + text + "' has an empty item (NAME[,NAME...])");
    const Metric* m = &metric(name, field);
    if (std::find(out.begin(), out.end(), m) != out.end()) {
      throw FieldError(field, "'" + text + "' names " + name + " twice");
    }
    out.push_back(m);
    begin = end + 1;
  }
  return out;
}

bool needs_reference(const MetricList& metrics) {
  return std::any_of(metrics.begin(), metrics.end(), [](const Metric* m) { return m->needs_reference; });
}

bool judges_prompt(const MetricList& metrics) {
  return std::any_of(metrics.begin(), metrics.end(), [](const Metric* m) { return m->judges_prompt; });
}

bool reads_as_vbench(const MetricList& metrics) {
  return std::any_of(metrics.begin(), metrics.end(), [](const Metric* m) { return m->reads_as_vbench; });
}

MetricList without_reference(const MetricList& metrics) {
  MetricList out;
  for (const Metric* m : metrics)
    if (!m->needs_reference) out.push_back(m);
  return out;
}

std::vector<Measurement> Scores::all() const {
  std::vector<Measurement> out;
  for (const auto& [m, values] : by_metric) out.insert(out.end(), values.begin(), values.end());
  return out;
}

std::optional<double> Scores::value(const std::string& name) const {
  for (const auto& [m, values] : by_metric)
    for (const auto& v : values)
      if (v.name == name) return v.value;
  return std::nullopt;
}

std::optional<double> Scores::headline(const Metric& metric) const {
  for (const auto& [m, values] : by_metric) {
    if (m != &metric) continue;
    for (const auto& v : values)
      if (v.name == metric.headline) return std::min(metric.cap, v.value);
  }
  return std::nullopt;
}

Scores score(const MetricList& metrics, const MetricInput& input) {
  if (!input.video) throw std::invalid_argument("no video to score");
  Scores s;
  for (const Metric* m : metrics) {
    if (m->needs_reference && !input.reference)
      throw std::invalid_argument(m->name + " needs a reference video");
    s.by_metric.emplace_back(m, m->score(input));
  }
  return s;
}

double combine(const MetricList& metrics, const std::map<std::string, double>& headlines) {
  auto of = [&](const Metric* m) {
    const auto it = headlines.find(m->name);
    if (it == headlines.end()) throw std::invalid_argument("no " + m->name + " score to combine");
    return it->second;
  };
  if (metrics.empty()) throw std::invalid_argument("no metrics to combine");
  if (metrics.size() == 1) return of(metrics.front());
  double sum = 0;
  for (const Metric* m : metrics) sum += of(m) / m->scale;
  return sum / static_cast<double>(metrics.size());
}

}  // namespace astraea::quality
