// Dense forward of a Wan preset on the GPU: median time and rate of one model call, against the
// card's measured bf16 GEMM rate and copy bandwidth, for each attention kernel and with the
// fused elementwise kernels on and off. Prints a table; --json writes every number.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "kernels/token_select.cuh"
#include "model/attention.h"
#include "model/block_ops.h"
#include "model/denoiser.h"
#include "model/token_cache.h"
#include "model/torch_compat.h"
#include "model/weights.h"
#include "profiler/timing.h"

#if ASTRAEA_HAS_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

namespace {

using astraea::AttentionBackend;

struct Stats {
  double median_ms, min_ms, max_ms;
};

#if ASTRAEA_HAS_TORCH_CUDA
// Times fn with CUDA events (the profiler's timer) after `warmup` untimed calls; median over `reps`.
Stats time_ms(const std::function<void()>& fn, int warmup, int reps) {
  static const auto timer = astraea::profiler::make_timer(at::Device(at::kCUDA, 0));
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(timer->time_ms(fn));
  const auto s = astraea::profiler::summarize(t);
  return {s.median_ms, s.min_ms, s.max_ms};
}
#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Dense forward benchmark of a Wan preset on one GPU"};
  std::string model = "wan2.1-1.3b", json_path;
  int64_t frames = 81, height = 480, width = 832, layers = 0;
  int warmup = 2, reps = 10;
  app.add_option("--model", model);
  app.add_option("--frames", frames);
  app.add_option("--height", height);
  app.add_option("--width", width);
  app.add_option("--layers", layers, "override the preset's layer count (0: keep)");
  app.add_option("--warmup", warmup);
  app.add_option("--reps", reps);
  app.add_option("--json", json_path);
  CLI11_PARSE(app, argc, argv);
#if !ASTRAEA_HAS_TORCH_CUDA
  std::fprintf(stderr, "astraea_forward_bench: this build has no CUDA LibTorch; nothing to measure\n");
  return 0;
#else
  if (!astraea::compat::cuda_available()) {
    std::fprintf(stderr, "astraea_forward_bench: no CUDA device\n");
    return 0;
  }
  at::set_num_threads(16);
  const at::Device gpu(at::kCUDA, 0);
  const auto bf16 = at::TensorOptions().device(gpu).dtype(at::kBFloat16);
  nlohmann::json j;
  auto props = at::cuda::getCurrentDeviceProperties();
  j["device"] = props->name;
  j["torch"] = TORCH_VERSION;

  // Ceilings measured on this card: bf16 GEMM and device-to-device copy.
  {
    auto a = at::randn({8192, 8192}, bf16), b = at::randn({8192, 8192}, bf16);
    auto s = time_ms([&] { at::matmul(a, b); }, 3, 10);
    j["gemm_tflops"] = 2.0 * 8192.0 * 8192.0 * 8192.0 / s.median_ms / 1e9;
    auto src = at::randn({1 << 30}, bf16), dst = at::empty_like(src);
    auto c = time_ms([&] { dst.copy_(src); }, 3, 10);
    j["copy_tbps"] = 2.0 * src.nbytes() / c.median_ms / 1e9;
  }

  auto config = astraea::model_preset(model);
  if (layers > 0) config.layers = layers;
  const auto shape = astraea::video_shape(config, frames, height, width);
  const int64_t n = shape.tokens(), d = config.dim, t = config.text_len;
  j["model"] = model;
  j["layers"] = config.layers;
  j["tokens"] = n;

  // Attention alone at this size, each fused kernel (with log-sum-exp).
  const auto q = at::randn({n, config.heads, config.head_dim()}, bf16);
  const auto k = at::randn_like(q), v = at::randn_like(q);
  const double attn_flop = 4.0 * n * n * d;
  for (auto b : {AttentionBackend::kFlash, AttentionBackend::kCudnn, AttentionBackend::kEfficient}) {
    try {
      auto s = time_ms([&] { astraea::attention(q, k, v, true, b); }, 2, 10);
      j["attention_ms"][astraea::attention_backend_name(b)] = s.median_ms;
      j["attention_tflops"][astraea::attention_backend_name(b)] = attn_flop / s.median_ms / 1e9;
    } catch (const std::exception& e) {
      j["attention_error"][astraea::attention_backend_name(b)] = std::string(e.what()).substr(0, 200);
    }
  }

  // The model, as the PyTorch baseline counts its FLOPs (bench/pytorch_wan_step.py: flops_tok).
  const double flop = (8.0 * d * d + 4.0 * n * d + 4.0 * d * d + 4.0 * t * d + 4.0 * d * config.ffn_dim) *
                      n * config.layers;
  j["forward_tflop"] = flop / 1e12;
  const auto owned =
      astraea::make_denoiser(config, astraea::random_weights(config, 0, gpu, at::kBFloat16), at::kBFloat16);
  const astraea::Denoiser& dit = *owned;
  auto latents = at::randn({config.in_channels, shape.latent_f, shape.latent_h, shape.latent_w});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  auto ctx = dit.embed_context(at::randn({t, config.text_dim}, gen).to(gpu, at::kBFloat16));
  auto x = latents.to(gpu);
  struct Variant {
    const char* name;
    AttentionBackend attention;
    bool fused;
  };
  std::printf("%-28s %10s %10s %10s %9s\n", "variant", "median ms", "min ms", "max ms", "TFLOP/s");
  for (const Variant& var : {Variant{"fused + cudnn attention", AttentionBackend::kCudnn, true},
                             Variant{"fused + flash attention", AttentionBackend::kFlash, true},
                             Variant{"aten + cudnn attention", AttentionBackend::kCudnn, false}}) {
    astraea::set_default_gpu_attention(var.attention);
    astraea::set_fused_kernels_disabled(!var.fused);
    try {
      auto s = time_ms([&] { dit.forward(x, 500.0, ctx); }, warmup, reps);
      std::printf("%-28s %10.1f %10.1f %10.1f %9.0f\n", var.name, s.median_ms, s.min_ms, s.max_ms,
                  flop / s.median_ms / 1e9);
      j["forward"][var.name] = {{"median_ms", s.median_ms}, {"min_ms", s.min_ms}, {"max_ms", s.max_ms},
                                {"tflops", flop / s.median_ms / 1e9}};
    } catch (const std::exception& e) {
      std::printf("%-28s failed: %.150s\n", var.name, e.what());
    }
  }
  astraea::set_fused_kernels_disabled(false);
  astraea::set_default_gpu_attention(AttentionBackend::kCudnn);

  // Token-wise forwards at each budget, against the dense forward of this run. The state is primed by
  // one dense call; each timed call then selects, computes its share and updates the caches.
  if (j.contains("forward") && j["forward"].contains("fused + cudnn attention")) {
    const double dense_ms = j["forward"]["fused + cudnn attention"]["median_ms"].get<double>();
    std::printf("%-28s %10s %10s %10s %9s\n", "token-wise budget", "median ms", "of dense", "target", "cache GB");
    const auto budget_key = [](double b) { return std::to_string(b).substr(0, 3); };  // "0.4"
    const auto tokenwise = [&](double b, const astraea::SelectionParams& sel = {}) {
      astraea::TokenEngineState state;
      dit.forward_tokenwise(x, 500.0, ctx, 1.0, sel, state);
      auto s = time_ms([&] { dit.forward_tokenwise(x, 480.0, ctx, b, sel, state); }, warmup, reps);
      return std::make_pair(s, state.bytes());
    };
    for (double b : {0.7, 0.5, 0.4, 0.3}) {
      const auto [s, cache_bytes] = tokenwise(b);
      const double ratio = s.median_ms / dense_ms;
      std::printf("%-28.1f %10.1f %10.3f %10.2f %9.2f\n", b, s.median_ms, ratio, b + 0.04, cache_bytes / 1e9);
      j["tokenwise"][budget_key(b)] = {{"median_ms", s.median_ms},
                                                        {"min_ms", s.min_ms},
                                                        {"max_ms", s.max_ms},
                                                        {"of_dense", ratio},
                                                        {"cache_bytes", cache_bytes}};
    }
    // Splitting the keys of cuDNN attention (astraea::choose_key_splits): attention alone at each
    // budget's query count with 1 to 4 parts, then the forward with 1 part and with the part count
    // that was fastest alone, where those differ from the chosen one.
    {
      const int64_t sms = props->multiProcessorCount;
      std::printf("%-7s %8s %7s %9s %9s %9s %9s %14s %20s\n", "budget", "queries", "chosen", "1 part",
                  "2 parts", "3 parts", "4 parts", "fwd, 1 part", "fwd, fastest parts");
      for (double b : {1.0, 0.7, 0.5, 0.4, 0.3}) {
        const int64_t nq = static_cast<int64_t>(std::ceil(b * n));
        const auto qs = at::randn({nq, config.heads, config.head_dim()}, bf16);
        const std::string key = budget_key(b);
        const int chosen = astraea::choose_key_splits(config.heads, nq, n, sms);
        j["key_splits"][key]["chosen"] = chosen;
        std::printf("%-7.1f %8lld %7d", b, static_cast<long long>(nq), chosen);
        int fastest = 1;
        double fastest_ms = 0.0;
        for (int parts = 1; parts <= 4; ++parts) {
          astraea::set_attention_key_splits(parts);
          const auto s =
              time_ms([&] { astraea::attention(qs, k, v, true, AttentionBackend::kCudnn); }, 2, 10);
          j["key_splits"][key]["attention_ms"][std::to_string(parts)] = s.median_ms;
          std::printf(" %9.3f", s.median_ms);
          if (parts == 1 || s.median_ms < fastest_ms) fastest = parts, fastest_ms = s.median_ms;
        }
        // The forward with one part, and with the part count that was fastest alone, where either
        // differs from the chosen one (whose forward is in the tables above).
        const auto forward_ms = [&](int parts) {
          astraea::set_attention_key_splits(parts);
          const double ms = b < 1.0 ? tokenwise(b).first.median_ms
                                    : time_ms([&] { dit.forward(x, 500.0, ctx); }, warmup, reps).median_ms;
          j["key_splits"][key]["forward_ms"][std::to_string(parts)] = ms;
          return ms;
        };
        if (chosen != 1)
          std::printf(" %14.1f", forward_ms(1));
        else
          std::printf(" %14s", "(above)");
        if (fastest != chosen)
          std::printf(" %16.1f (%d)", forward_ms(fastest), fastest);
        else
          std::printf(" %20s", "(chosen)");
        astraea::set_attention_key_splits(0);
        std::printf("\n");
      }
    }
    // The selection options (docs/schedule.md), each against the default in this run. Tiles and the
    // per-frame floor select with ATen operations (the fused top-k takes single tokens), then run on
    // the fused kernels like the default.
    {
      struct Option {
        const char* name;
        astraea::SelectionParams sel;
      };
      astraea::SelectionParams reuse, tile, floor;
      reuse.reuse_kv = true;
      tile.tile = 4;
      floor.min_frame_share = 0.2;
      std::printf("%-7s %-28s %10s %10s %9s\n", "budget", "selection option", "median ms", "of default",
                  "cache GB");
      for (double b : {0.5, 0.3}) {
        const double default_ms = j["tokenwise"][budget_key(b)]["median_ms"].get<double>();
        for (const Option& o : {Option{"reused keys and values", reuse}, Option{"tiles of 4 tokens", tile},
                                Option{"frame floor 0.2", floor}}) {
          const auto [s, bytes] = tokenwise(b, o.sel);
          std::printf("%-7.1f %-28s %10.1f %10.3f %9.2f\n", b, o.name, s.median_ms, s.median_ms / default_ms,
                      bytes / 1e9);
          j["selection_options"][budget_key(b)][o.name] = {
              {"median_ms", s.median_ms}, {"of_default", s.median_ms / default_ms}, {"cache_bytes", bytes}};
        }
      }
    }
    // Where a sparse block's time goes: each of its operations alone, with the engine's shapes, at
    // budget 0.5 and at 1 (dense). Their sum against the measured forward shows the overhead that no
    // single operation accounts for (launches, allocation).
    {
      const int64_t ffn = config.ffn_dim;
      auto xf = at::randn({n, d}, at::TensorOptions().device(gpu));
      auto wkv = at::randn({2 * d, d}, bf16), wq = at::randn({d, d}, bf16), wf1 = at::randn({ffn, d}, bf16),
           wf2 = at::randn({d, ffn}, bf16), nw = at::ones({d}, at::TensorOptions().device(gpu));
      auto ctx_kv = at::randn({t, d}, bf16), bias = at::zeros({ffn}, bf16);
      auto ones = at::ones({d}, at::TensorOptions().device(gpu)), zeros = at::zeros({d}, at::TensorOptions().device(gpu));
      auto inv = at::rand({config.head_dim() / 2}, at::TensorOptions().device(gpu));
      for (double b : {0.5, 1.0}) {
        const int64_t kk = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(b * n)));
        auto idx = std::get<0>(at::randperm(n, at::TensorOptions().device(gpu).dtype(at::kLong)).narrow(0, 0, kk).sort());
        astraea::RopeGrid grid{shape.grid_f, shape.grid_h, shape.grid_w, inv, {}};
        auto xn = at::randn({n, d}, bf16), xs = at::randn({kk, d}, bf16), hs = at::randn({kk, ffn}, bf16);
        auto qs = at::randn({kk, config.heads, config.head_dim()}, bf16);
        auto kv = at::randn({n, 2 * d}, bf16);
        std::vector<std::pair<const char*, std::function<void()>>> ops = {
            {"layer norm, all tokens", [&] { astraea::residual_layer_norm(xf, {}, {}, ones, zeros, at::kBFloat16, 1e-6); }},
            {"k|v projection, all", [&] { at::linear(xn, wkv); }},
            {"k rms+rope, all", [&] { astraea::rms_norm_rope(kv.narrow(1, 0, d), nw, &grid, config.heads, 1e-6); }},
            {"gather rows", [&] { xf.index_select(0, idx); }},
            {"q projection", [&] { at::linear(xs, wq); }},
            {"self-attention", [&] { astraea::attention(qs, q, k, true); }},
            {"o projection", [&] { at::linear(xs, wq); }},
            {"cross q + o projections", [&] { at::linear(xs, wq); at::linear(xs, wq); }},
            {"cross-attention", [&] { astraea::attention(qs, ctx_kv.view({t, config.heads, -1}), ctx_kv.view({t, config.heads, -1}), false); }},
            {"ffn up + gelu", [&] { astraea::compat::linear_gelu_tanh(xs, wf1, bias); }},
            {"ffn down", [&] { at::linear(hs, wf2); }},
        };
        double sum = 0;
        const std::string key = b == 1.0 ? "dense" : "budget_0.5";
        for (auto& [name, fn] : ops) {
          auto st = time_ms(fn, 3, 20);
          sum += st.median_ms;
          j["block_ops_ms"][key][name] = st.median_ms;
        }
        j["block_ops_ms"][key]["sum"] = sum;
        std::printf("block operations at budget %.1f: sum %.3f ms a block, %.1f ms a forward\n", b, sum, sum * config.layers);
      }
    }
    // Selection alone, as a sparse block runs it (kernels::select_tokens: score every token, then
    // the top half in ascending order), on random cache state.
    const auto f32 = at::TensorOptions().device(gpu).dtype(at::kFloat);
    auto lse = at::randn({n}, f32), sketch_new = at::randn({n, astraea::kSketchDim}, f32),
         sketch_old = at::randn({n, astraea::kSketchDim}, f32), stale = at::randint(0, 6, {n}, f32);
    auto score = at::empty({n}, f32);
    auto idx = at::empty({n / 2}, f32.dtype(at::kLong));
    const size_t ws_bytes = astraea::kernels::select_tokens_workspace_bytes(n);
    auto ws = at::empty({static_cast<int64_t>(ws_bytes)}, f32.dtype(at::kByte));
    const auto stream = static_cast<astraea::kernels::Stream>(astraea::compat::current_stream(gpu));
    auto sel = time_ms([&] {
      astraea::kernels::select_tokens(lse.data_ptr<float>(), sketch_new.data_ptr<float>(), sketch_old.data_ptr<float>(),
                             astraea::kSketchDim, stale.data_ptr<float>(), 1.0f, 1.0f, n, n / 2, score.data_ptr<float>(),
                             idx.data_ptr<int64_t>(), ws.data_ptr(), ws_bytes, stream);
    }, 3, 20);
    j["selection_ms"] = sel.median_ms;
    std::printf("selection (select_tokens: score and top half of %lld tokens): %.3f ms a block, %.1f ms a forward\n",
                static_cast<long long>(n), sel.median_ms, sel.median_ms * config.layers);
  }
  std::printf("%s\n", j.dump(2).c_str());
  if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << "\n";
  return 0;
#endif
}
