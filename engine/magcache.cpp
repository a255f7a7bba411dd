// MagCache (docs/peers.md; after MagCache4Wan2.1): the residual of the block stack shrinks by a
// nearly prompt-independent ratio from step to step, calibrated once. After the retention steps,
// each branch multiplies the ratios of the steps it would skip; while the accumulated error
// sum |1 - product| stays under `threshold` and at most K calls in a row, the kept residual stands
// in for the blocks. `calibrate=1` computes every step and reports the ratios it measured.
#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "engine/methods.h"
#include "engine/step_cache.h"
#include "model/denoiser.h"

namespace astraea::engine {
namespace {

// MagCache's calibrated ratios for Wan2.1-T2V-1.3B at 50 steps, conditional and unconditional
// calls interleaved (MagCache4Wan2.1/magcache_generate.py).
const std::vector<double>& wan13b_ratios() {
  static const std::vector<double> r = {
      1.0,     1.0,     1.0124,  1.02213, 1.00166, 1.0041,  0.99791, 1.00061, 0.99682, 0.99762,
      0.99634, 0.99685, 0.99567, 0.99586, 0.99416, 0.99422, 0.99578, 0.99575, 0.9957,  0.99563,
      0.99511, 0.99506, 0.99535, 0.99531, 0.99552, 0.99549, 0.99541, 0.99539, 0.9954,  0.99536,
      0.99489, 0.99485, 0.99518, 0.99514, 0.99484, 0.99478, 0.99481, 0.99479, 0.99415, 0.99413,
      0.99419, 0.99416, 0.99396, 0.99393, 0.99388, 0.99386, 0.99349, 0.99349, 0.99309, 0.99304,
      0.9927,  0.9927,  0.99228, 0.99226, 0.99171, 0.9917,  0.99137, 0.99135, 0.99068, 0.99063,
      0.99005, 0.99003, 0.98944, 0.98942, 0.98849, 0.98849, 0.98758, 0.98757, 0.98644, 0.98643,
      0.98504, 0.98503, 0.9836,  0.98359, 0.98202, 0.98201, 0.97977, 0.97978, 0.97717, 0.97718,
      0.9741,  0.97411, 0.97003, 0.97002, 0.96538, 0.96541, 0.9593,  0.95933, 0.95086, 0.95089,
      0.94013, 0.94019, 0.92402, 0.92414, 0.90241, 0.9026,  0.86821, 0.86868, 0.81838, 0.81939};
  return r;
}

struct Ratios {
  std::vector<double> cond, uncond;
  std::string source;
};

Ratios read_ratios(const std::string& spec) {
  Ratios r;
  r.source = spec;
  if (spec == "wan2.1-1.3b") {
    const auto& all = wan13b_ratios();
    for (size_t i = 0; i < all.size(); ++i) (i % 2 ? r.uncond : r.cond).push_back(all[i]);
    return r;
  }
  std::ifstream in(spec);
  if (!in) throw std::invalid_argument("magcache ratios " + spec + ": cannot be read");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument("magcache ratios " + spec + ": not JSON");
  }
  // A calibration run's --result-json, or {"cond": [...], "uncond": [...]}.
  if (j.contains("method_report")) j = j.at("method_report");
  for (const char* branch : {"cond", "uncond"}) {
    if (!j.contains(branch)) {
      if (std::string(branch) == "uncond") break;  // an unguided calibration
      throw std::invalid_argument("magcache ratios " + spec + ": no field '" + branch + "'");
    }
    auto list = j.at(branch);
    if (list.is_object()) list = list.value("mag_ratios", nlohmann::json());
    if (!list.is_array() || list.empty()) {
      throw std::invalid_argument("magcache ratios " + spec + ": field '" + branch +
                                  "' is not a list of ratios");
    }
    auto& out = std::string(branch) == "cond" ? r.cond : r.uncond;
    for (const auto& v : list) {
      if (!v.is_number() || !(v.get<double>() > 0)) {
        throw std::invalid_argument("magcache ratios " + spec + ": field '" + branch +
                                    "' holds a non-positive ratio");
      }
      out.push_back(v.get<double>());
    }
  }
  if (r.uncond.empty()) r.uncond = r.cond;
  return r;
}

struct MagParams {
  double threshold = 0.12;
  int64_t k = 2;
  double retention = 0.2;
  bool calibrate = false;
  std::shared_ptr<const Ratios> ratios;  // null when calibrating, or until "auto" is resolved
};

class MagBranch : public ResidualCache {
 public:
  explicit MagBranch(const MagParams& p) : ResidualCache(0), p_(p) {}
  /// ResidualCache::run, once the "auto" ratios are resolved for the model: the published ones
  /// for Wan2.1-1.3B, else the checkout's calibration assets/calibration/magcache_MODEL.json.
  at::Tensor run(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                 const at::Tensor& context) {
    if (!p_.calibrate && !p_.ratios) {
      const auto& name = model.config().name;
      const auto file = shipped_file("assets/calibration/magcache_" + name + ".json");
      if (name != "wan2.1-1.3b" && file.empty()) {
        throw std::invalid_argument(
            "magcache has no calibrated ratios for model " + name +
            ": run generate --method magcache:calibrate=1 --result-json FILE once, then pass ratios=FILE");
      }
      p_.ratios = std::make_shared<const Ratios>(read_ratios(name == "wan2.1-1.3b" ? "wan2.1-1.3b" : file));
    }
    return ResidualCache::run(model, latents, call, context);
  }
  nlohmann::json report() const override {
    if (!p_.calibrate) return nullptr;
    return {{"mag_ratios", measured_}};
  }

 private:
  bool reuse(const StackPoint&, const CallInfo& call, bool kept) override {
    if (p_.calibrate || call.step < static_cast<int64_t>(static_cast<double>(call.steps) * p_.retention)) {
      return false;
    }
    acc_ratio_ *=
        magcache_ratio(call.branch == 0 ? p_.ratios->cond : p_.ratios->uncond, call.step, call.steps);
    acc_steps_ += 1;
    acc_err_ += std::abs(1.0 - acc_ratio_);
    if (kept && acc_err_ < p_.threshold && acc_steps_ <= p_.k) return true;
    acc_ratio_ = 1.0;
    acc_steps_ = 0;
    acc_err_ = 0;
    return false;
  }
  void computed(const at::Tensor& residual) override {
    if (!p_.calibrate) return;
    const auto norms = residual[0].norm(2, {-1});  // per token
    measured_.push_back(last_norms_.defined() ? (norms / last_norms_).mean().item<double>() : 1.0);
    last_norms_ = norms;
  }
  MagParams p_;
  double acc_ratio_ = 1.0, acc_err_ = 0;
  int64_t acc_steps_ = 0;
  std::vector<double> measured_;
  at::Tensor last_norms_;
};

}  // namespace

double magcache_ratio(const std::vector<double>& ratios, int64_t step, int64_t steps) {
  if (steps <= 1 || ratios.size() == 1) return ratios.front();
  // Nearest of the calibrated steps, as MagCache interpolates to another step count.
  const double scale = static_cast<double>(ratios.size() - 1) / static_cast<double>(steps - 1);
  const auto i = static_cast<size_t>(std::llround(static_cast<double>(step) * scale));
  return ratios.at(std::min(i, ratios.size() - 1));
}

MethodInfo magcache_method() {
  return {"magcache",
          "MagCache: the block stack reuses its last residual while the accumulated error of the calibrated "
          "magnitude ratios stays under threshold, at most K calls in a row",
          {{"threshold", "0.12", "accumulated magnitude error under which the blocks are reused"},
           {"K", "2", "at most this many reusing calls in a row"},
           {"retention", "0.2", "share of the first steps always computed"},
           {"ratios", "auto",
            "calibrated ratios: auto (the published ones on wan2.1-1.3b, else the checkout's "
            "assets/calibration/magcache_MODEL.json), wan2.1-1.3b, or a calibration run's --result-json"},
           {"calibrate", "0", "1: compute every step and report the ratios measured (method_report)"}},
          [](const MethodParams& m) -> std::shared_ptr<const Accelerator> {
            MagParams p;
            p.threshold = number_param(m, "threshold", 0.12, 0, 1e6);
            p.k = static_cast<int64_t>(number_param(m, "K", 2, 0, 1e6));
            p.retention = number_param(m, "retention", 0.2, 0, 1);
            p.calibrate = number_param(m, "calibrate", 0, 0, 1) != 0;
            if (!p.calibrate) {
              const auto r = m.find("ratios");
              if (r != m.end() && r->second != "auto")
                p.ratios = std::make_shared<const Ratios>(read_ratios(r->second));
            }
            const auto params = p.calibrate
                                    ? nlohmann::json{{"calibrate", 1}}
                                    : nlohmann::json{{"threshold", p.threshold},
                                                     {"K", p.k},
                                                     {"retention", p.retention},
                                                     {"ratios", p.ratios ? p.ratios->source : "auto"}};
            return std::make_shared<const BranchMethod<MagBranch, MagParams>>("magcache", p, params);
          }};
}

}  // namespace astraea::engine
