#include "engine/methods.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "model/denoiser.h"

namespace astraea::engine {

const std::vector<MethodInfo>& methods() {
  // The registration table: a new method is one file and one line here.
  // clang-format off
  static const std::vector<MethodInfo> table = {
      dense_method(),
      astraea_method(),
      teacache_method(),
      magcache_method(),
      easycache_method(),
      fbcache_method(),
      pab_method(),
      toca_method(),
  };
  // clang-format on
  return table;
}

const MethodInfo& method_info(const std::string& name) {
  std::string known;
  for (const auto& m : methods()) {
    if (m.name == name) return m;
    known += (known.empty() ? "" : ", ") + m.name;
  }
  throw std::invalid_argument("method '" + name + "' is not registered (known: " + known + ")");
}

std::shared_ptr<const Accelerator> make_method(const std::string& spec) {
  const auto colon = spec.find(':');
  const auto& info = method_info(spec.substr(0, colon));
  MethodParams params;
  if (colon != std::string::npos) {
    size_t begin = colon + 1;
    while (begin <= spec.size()) {
      const size_t end = std::min(spec.find(',', begin), spec.size());
      const std::string item = spec.substr(begin, end - begin);
      const auto eq = item.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw std::invalid_argument("method " + info.name + ": '" + item + "' is not KEY=VALUE");
      }
      const std::string key = item.substr(0, eq);
      bool known = false;
      std::string names;
      for (const auto& k : info.knobs) {
        known = known || k.name == key;
        names += (names.empty() ? "" : ", ") + k.name;
      }
      if (!known) {
        throw std::invalid_argument("method " + info.name + " has no parameter '" + key +
                                    "' (it takes: " + (names.empty() ? std::string("none") : names) + ")");
      }
      if (!params.emplace(key, item.substr(eq + 1)).second) {
        throw std::invalid_argument("method " + info.name + ": parameter '" + key + "' given twice");
      }
      begin = end + 1;
    }
  }
  return info.make(params);
}

std::vector<std::string> expand_method_spec(const std::string& spec) {
  const auto colon = spec.find(':');
  if (colon == std::string::npos || spec.find('|') == std::string::npos) return {spec};
  std::vector<std::string> out{spec.substr(0, colon + 1)};
  size_t begin = colon + 1;
  bool first = true;
  while (begin <= spec.size()) {
    const size_t end = std::min(spec.find(',', begin), spec.size());
    const std::string item = spec.substr(begin, end - begin);
    const auto eq = item.find('=');
    std::vector<std::string> values;
    if (eq == std::string::npos) {
      values.push_back(item);
    } else {
      for (size_t b = eq + 1;;) {
        const size_t e = std::min(item.find('|', b), item.size());
        if (e == b) throw std::invalid_argument("'" + item + "' has an empty alternative");
        values.push_back(item.substr(b, e - b));
        if (e == item.size()) break;
        b = e + 1;
      }
    }
    std::vector<std::string> next;
    for (const auto& prefix : out)
      for (const auto& v : values)
        next.push_back(prefix + (first ? "" : ",") +
                       (eq == std::string::npos ? v : item.substr(0, eq + 1) + v));
    if (next.size() > 1000) throw std::invalid_argument("'" + spec + "' expands to more than 1000 methods");
    out = std::move(next);
    first = false;
    begin = end + 1;
  }
  return out;
}

int64_t call_tokens(const Denoiser& model, const at::Tensor& latents) {
  const auto& p = model.config().patch;
  return latents.size(1) / p[0] * (latents.size(2) / p[1]) * (latents.size(3) / p[2]);
}

void require_stack_policy(const Denoiser& model, const std::string& method) {
  if (!model.has_stack_policy()) {
    throw std::invalid_argument("model family '" + model.config().family + "' has no forward for " + method);
  }
}

std::string tokens_action(double budget) {
  char text[32];
  std::snprintf(text, sizeof text, "tokens:%.4g", budget);
  return text;
}

double number_param(const MethodParams& params, const std::string& key, double fallback, double lo,
                    double hi) {
  const auto it = params.find(key);
  if (it == params.end()) return fallback;
  size_t used = 0;
  double v = NAN;
  try {
    v = std::stod(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != it->second.size() || !(v >= lo && v <= hi)) {
    char range[64];
    std::snprintf(range, sizeof range, "[%g, %g]", lo, hi);
    throw std::invalid_argument("parameter " + key + "=" + it->second + " is not a number in " + range);
  }
  return v;
}

}  // namespace astraea::engine
