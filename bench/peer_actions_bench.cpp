// The cost of each kind of model call the methods make (engine/step_costs.h), on a Wan preset on
// one GPU: dense; the stand-in of every block by a kept residual (TeaCache, MagCache) and of every
// block after the first (First-Block Cache); every block broadcasting its self-, cross- or both
// attention outputs (PAB); the token-wise engine at several budgets (ASTRAEA, ToCa); and the
// output reused without a model call (EasyCache). Times with CUDA events, interleaved, medians.
// Writes the table that `astraea-bench report --step-costs` and docs/peers.md price runs with.
#include <ATen/ATen.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/step_costs.h"
#include "model/denoiser.h"
#include "model/stack_policy.h"
#include "model/token_cache.h"
#include "model/torch_compat.h"
#include "model/weights.h"
#include "profiler/timing.h"

namespace {

// Stands in for every block from FROM with RESIDUAL, or reuses attention outputs (kept by a first
// computing call) in every block.
class FixedPolicy : public astraea::StackPolicy {
 public:
  int64_t from = -1;
  at::Tensor residual;
  bool self = false, cross = false;
  std::vector<astraea::AttentionReuse> kept;
  at::Tensor before_block(const astraea::StackPoint& p) override {
    return p.block == from ? residual : at::Tensor();
  }
  void after_stack(const at::Tensor&) override {}
  astraea::AttentionReuse* attention(int64_t block) override {
    if (!self && !cross) return nullptr;
    if (kept.size() <= static_cast<size_t>(block)) kept.resize(block + 1);
    auto& r = kept[block];
    r.self = self && r.self_out.defined();
    r.cross = cross && r.cross_out.defined();
    return &r;
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Cost of each kind of model call of the acceleration methods, on a Wan preset on one GPU"};
  std::string model = "wan2.1-1.3b", json_path, budgets_text = "0.1,0.2,0.3,0.4,0.5,0.7";
  int64_t frames = 81, height = 480, width = 832;
  double seconds = 4;
  app.add_option("--model", model);
  app.add_option("--frames", frames);
  app.add_option("--height", height);
  app.add_option("--width", width);
  app.add_option("--budgets", budgets_text, "token budgets to time, comma-separated");
  app.add_option("--seconds", seconds, "time limit per variant");
  app.add_option("--json", json_path, "write the table (engine/step_costs.h) here");
  CLI11_PARSE(app, argc, argv);
  if (!astraea::compat::cuda_available()) {
    std::fprintf(stderr, "astraea_peer_actions_bench: no CUDA device; nothing to measure\n");
    return 0;
  }
  const at::Device gpu(at::kCUDA, 0);
  auto config = astraea::model_preset(model);
  const auto dit =
      astraea::make_denoiser(config, astraea::random_weights(config, 0, gpu, at::kBFloat16), at::kBFloat16);
  const auto shape = astraea::video_shape(config, frames, height, width);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const auto x = at::randn({config.in_channels, shape.latent_f, shape.latent_h, shape.latent_w}, gen).to(gpu);
  const auto ctx =
      dit->embed_context(at::randn({config.text_len, config.text_dim}, gen).to(gpu, at::kBFloat16));
  const int64_t n = shape.tokens();
  const double t = 500;

  std::vector<std::string> names;
  std::vector<std::function<void()>> calls;
  auto add = [&](std::string name, std::function<void()> fn) {
    names.push_back(std::move(name));
    calls.push_back(std::move(fn));
  };
  add("dense", [&] { dit->forward(x, t, ctx); });
  const auto delta = at::randn_like(x);
  add("reuse", [&] { (void)(x + delta); });
  auto stand_in = std::make_shared<FixedPolicy>(), first = std::make_shared<FixedPolicy>();
  stand_in->from = 0;
  first->from = 1;
  stand_in->residual = first->residual = at::zeros({1, n, config.dim}, x.options());
  add("stand_in", [&] { dit->forward_with_policy(x, t, ctx, *stand_in); });
  add("first_block", [&] { dit->forward_with_policy(x, t, ctx, *first); });
  std::vector<std::shared_ptr<FixedPolicy>> pab;
  for (auto [self, cross] : {std::pair{true, false}, {false, true}, {true, true}}) {
    auto p = std::make_shared<FixedPolicy>();
    p->self = self;
    p->cross = cross;
    dit->forward_with_policy(x, t, ctx, *p);  // keeps every block's outputs
    pab.push_back(p);
    add(self && cross ? "pab_both"
        : self        ? "pab_self"
                      : "pab_cross",
        [&dit, &x, &ctx, t, p] { dit->forward_with_policy(x, t, ctx, *p); });
  }
  std::vector<double> budgets;
  for (size_t b = 0; b <= budgets_text.size();) {
    const size_t e = std::min(budgets_text.find(',', b), budgets_text.size());
    budgets.push_back(std::stod(budgets_text.substr(b, e - b)));
    b = e + 1;
  }
  std::vector<std::shared_ptr<astraea::TokenEngineState>> states;
  for (double b : budgets) {
    auto s = std::make_shared<astraea::TokenEngineState>();
    dit->forward_tokenwise(x, t, ctx, 1.0, {}, *s);  // fills the caches
    states.push_back(s);
    add("tokens:" + std::to_string(b),
        [&dit, &x, &ctx, t, b, s] { dit->forward_tokenwise(x, t, ctx, b, {}, *s); });
  }

  auto timer = astraea::profiler::make_timer(gpu);
  std::vector<astraea::profiler::Sampler> samplers;
  for (auto& fn : calls) samplers.push_back([&timer, &fn] { return timer->time_ms(fn); });
  astraea::profiler::TimingOptions opt;
  opt.warmup = 2;
  opt.min_reps = 10;
  opt.max_seconds = seconds;
  opt.noise = 0.01;
  const auto stats = astraea::profiler::measure_interleaved(samplers, opt, 1);

  astraea::engine::StepCosts c;
  c.model = model;
  c.device = astraea::profiler::environment(gpu).value("device", "cuda");
  c.tokens = n;
  c.layers = config.layers;
  nlohmann::json detail = nlohmann::json::object();
  for (size_t i = 0; i < names.size(); ++i) {
    const double ms = stats[i].median_ms;
    detail[names[i]] = {{"median_ms", ms}, {"noise", stats[i].noise}, {"reps", stats[i].reps}};
    std::printf("%-14s %9.2f ms  (noise %.1f%%, %d reps)\n", names[i].c_str(), ms, 100 * stats[i].noise,
                stats[i].reps);
    if (names[i] == "dense") c.dense_ms = ms;
    if (names[i] == "reuse") c.reuse_ms = ms;
    if (names[i] == "stand_in") c.stand_in_ms = ms;
    if (names[i] == "first_block") c.first_block_ms = ms;
    if (names[i] == "pab_self") c.pab_self_ms = ms;
    if (names[i] == "pab_cross") c.pab_cross_ms = ms;
    if (names[i] == "pab_both") c.pab_both_ms = ms;
    if (names[i].rfind("tokens:", 0) == 0) c.tokens_ms[std::stod(names[i].substr(7))] = ms;
  }
  auto j = c.to_json();
  j["detail"] = detail;
  j["environment"] = astraea::profiler::environment(gpu);
  j["frames"] = frames;
  j["height"] = height;
  j["width"] = width;
  if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << "\n";
  return 0;
}
