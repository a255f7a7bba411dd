// astraea-bench step-costs: the time of each kind of model call the methods make
// (engine/step_costs.h), on a preset and size on one device: dense; a kept residual standing in
// for every block (TeaCache, MagCache) and for every block after the first (First-Block Cache);
// every block reusing its self-, cross- or both attention outputs (PAB); the token-wise engine at
// several budgets (ASTRAEA); the output reused without a model call (EasyCache). Timed
// interleaved under the profiler's protocol; writes the table `report --step-costs` prices
// runs with (docs/peers.md).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/progress.h"
#include "apps/provenance.h"
#include "engine/generate.h"
#include "engine/methods.h"
#include "engine/step_costs.h"
#include "io/atomic_file.h"
#include "model/denoiser.h"
#include "model/stack_policy.h"
#include "model/token_cache.h"
#include "model/torch_compat.h"
#include "profiler/timing.h"

namespace astraea::app {
namespace {

// Stands in for every block from FROM with RESIDUAL, or has every block reuse its attention
// outputs (kept by the first call through it).
class FixedPolicy : public StackPolicy {
 public:
  int64_t from = -1;
  at::Tensor residual;
  bool self = false, cross = false;
  int64_t fresh = 0;  // > 0: ToCa's partial call on this many tokens (the first ones)
  std::vector<BlockReuse> kept;
  at::Tensor before_block(const StackPoint& p) override { return p.block == from ? residual : at::Tensor(); }
  void after_stack(const at::Tensor&) override {}
  BlockReuse* attention(int64_t block) override {
    if (!self && !cross && fresh == 0) return nullptr;
    if (kept.size() <= static_cast<size_t>(block)) kept.resize(block + 1);
    auto& r = kept[block];
    r.self = self && r.self_out.defined();
    r.cross = cross && r.cross_out.defined();
    r.tokenwise = fresh > 0;
    if (fresh > 0 && r.ffn_out.defined()) r.fresh = at::arange(fresh, r.ffn_out.options().dtype(at::kLong));
    return &r;
  }
};

struct Flags {
  GenerateOptions o;
  std::string budgets = "0.1,0.2,0.3,0.5,0.7", toca_ratios = "0.1,0.3", out;
  double max_seconds = 5;
};

void run(const Flags& f) {
  check_output_path("--out", f.out, {".json"});
  const auto budgets = parse_number_list("--budgets", f.budgets, 0.0, 1.0);
  const auto model = load_model(f.o);
  const auto& c = model->config();
  const auto shape =
      video_shape(c, f.o.frames ? f.o.frames : c.default_frames, f.o.height ? f.o.height : c.default_height,
                  f.o.width ? f.o.width : c.default_width);
  const auto device = model->device();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const auto x = at::randn({c.in_channels, shape.latent_f, shape.latent_h, shape.latent_w}, gen).to(device);
  const auto ctx = model->embed_context(at::randn({c.text_len, c.text_dim}, gen).to(device, model->dtype()));
  const double t = 500;
  std::vector<std::string> names;
  std::vector<std::function<void()>> calls;
  auto add = [&](std::string name, std::function<void()> fn) {
    names.push_back(std::move(name));
    calls.push_back(std::move(fn));
  };
  const Denoiser& dit = *model;
  add("dense", [&] { dit.forward(x, t, ctx); });
  const auto delta = at::randn_like(x);
  add("reuse", [&] { (void)(x + delta); });
  auto stand_in = std::make_shared<FixedPolicy>(), first = std::make_shared<FixedPolicy>();
  stand_in->from = 0;
  first->from = 1;
  stand_in->residual = first->residual = at::zeros({1, shape.tokens(), c.dim}, x.options());
  add("stand_in", [&] { dit.forward_with_policy(x, t, ctx, *stand_in); });
  add("first_block", [&] { dit.forward_with_policy(x, t, ctx, *first); });
  for (const auto& [self, cross] :
       std::vector<std::pair<bool, bool>>{{true, false}, {false, true}, {true, true}}) {
    auto p = std::make_shared<FixedPolicy>();
    p->self = self;
    p->cross = cross;
    dit.forward_with_policy(x, t, ctx, *p);  // keeps every block's outputs
    add(self && cross ? "pab_both"
        : self        ? "pab_self"
                      : "pab_cross",
        [&dit, &x, &ctx, t, p] { dit.forward_with_policy(x, t, ctx, *p); });
  }
  for (double r : parse_number_list("--toca-ratios", f.toca_ratios, 0.0, 1.0)) {
    if (r <= 0 || r >= 1) continue;
    auto p = std::make_shared<FixedPolicy>();
    p->self = true;
    p->fresh = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(r * static_cast<double>(shape.tokens()))));
    dit.forward_with_policy(x, t, ctx, *p);  // a full call keeps every block's outputs
    char name[32];
    std::snprintf(name, sizeof name, "toca:%.4g", r);
    add(name, [&dit, &x, &ctx, t, p] { dit.forward_with_policy(x, t, ctx, *p); });
  }
  for (double b : budgets) {
    if (b <= 0 || b >= 1) continue;  // 0 costs nothing, 1 is dense
    auto s = std::make_shared<TokenEngineState>();
    dit.forward_tokenwise(x, t, ctx, 1.0, {}, *s);  // fills the caches
    add(engine::tokens_action(b), [&dit, &x, &ctx, t, b, s] { dit.forward_tokenwise(x, t, ctx, b, {}, *s); });
  }
  auto timer = profiler::make_timer(device);
  std::vector<profiler::Sampler> samplers;
  for (auto& fn : calls) samplers.push_back([&timer, &fn] { return timer->time_ms(fn); });
  profiler::TimingOptions opt;
  opt.min_reps = 7;
  opt.max_seconds = f.max_seconds;
  opt.noise = 0.01;
  Progress progress("timing " + std::to_string(calls.size()) + " kinds of call", opt.max_reps);
  const auto stats = profiler::measure_interleaved(samplers, opt, 1, {},
                                                   [&](int rounds, const auto&) { progress.update(rounds); });
  progress.finish();

  engine::StepCosts table;
  const auto env = profiler::environment(device);
  table.model = c.name;
  table.device = env.value("device", f.o.device);
  table.tokens = shape.tokens();
  table.layers = c.layers;
  nlohmann::json detail = nlohmann::json::object();
  for (size_t i = 0; i < names.size(); ++i) {
    const double ms = stats[i].median_ms;
    detail[names[i]] = {{"median_ms", ms}, {"noise", stats[i].noise}, {"reps", stats[i].reps}};
    std::printf("%-14s %10.3f ms  (noise %.1f%%, %d reps)\n", names[i].c_str(), ms, 100 * stats[i].noise,
                stats[i].reps);
    const auto& n = names[i];
    double* field = n == "dense"         ? &table.dense_ms
                    : n == "reuse"       ? &table.reuse_ms
                    : n == "stand_in"    ? &table.stand_in_ms
                    : n == "first_block" ? &table.first_block_ms
                    : n == "pab_self"    ? &table.pab_self_ms
                    : n == "pab_cross"   ? &table.pab_cross_ms
                    : n == "pab_both"    ? &table.pab_both_ms
                                         : nullptr;
    if (field) *field = ms;
    if (n.rfind("tokens:", 0) == 0) table.tokens_ms[std::stod(n.substr(7))] = ms;
    if (n.rfind("toca:", 0) == 0) table.toca_ms[std::stod(n.substr(5))] = ms;
  }
  auto j = table.to_json();
  j["detail"] = detail;
  j["environment"] = env;
  j["size"] =
      std::to_string(shape.frames) + "x" + std::to_string(shape.height) + "x" + std::to_string(shape.width);
  const auto error = write_file_atomically(f.out, j.dump(2) + "\n");
  if (!error.empty()) throw UsageError("--out " + f.out + ": " + error);
  std::printf("wrote %s: %s %s (%lld tokens) on %s\n", f.out.c_str(), c.name.c_str(),
              j["size"].get<std::string>().c_str(), static_cast<long long>(table.tokens),
              table.device.c_str());
}

}  // namespace

void register_step_costs(CLI::App& app) {
  auto f = std::make_shared<Flags>();
  auto* sub = app.add_subcommand(
      "step-costs",
      "Time each kind of model call the methods make (dense, stand-ins, attention "
      "reuse, token budgets) on one device: the table report --step-costs prices runs with");
  add_model_flags(sub, f->o.model, f->o.weights, f->o.frames, f->o.height, f->o.width);
  add_device_flag(sub, f->o.device);
  sub->add_option("--dtype", f->o.dtype, "fp32 or bf16 (default: bf16 on CUDA, fp32 on the CPU)");
  sub->add_option("--budgets", f->budgets, "token budgets to time, comma-separated")->default_val(f->budgets);
  sub->add_option("--toca-ratios", f->toca_ratios, "ToCa ratios to time, comma-separated")
      ->default_val(f->toca_ratios);
  sub->add_option("--max-seconds", f->max_seconds, "time limit per kind of call")
      ->default_val(f->max_seconds);
  sub->add_option("--out", f->out, "the table, .json")->required();
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
