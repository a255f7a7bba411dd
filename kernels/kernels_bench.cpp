// The kernels at Wan 2.1 sizes, timed with CUDA events, next to a device-to-device copy as the
// bandwidth ceiling. GB/s counts the least traffic an op needs: each input read once, each output
// written once. Without a CUDA device every benchmark reports a skip and the program exits 0.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>

#include "astraea/config.h"
#include "kernels/types.h"

#if ASTRAEA_HAS_CUDA_KERNELS

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/attention_merge.cuh"
#include "kernels/cuda_check.h"
#include "kernels/residual_layer_norm.cuh"
#include "kernels/rms_norm_rope.cuh"
#include "kernels/token_scatter.cuh"
#include "kernels/token_select.cuh"

namespace astraea::kernels {
namespace {

// Wan 2.1 1.3B at 480 x 832, 81 frames: 21 x 60 x 104 latents in 1 x 2 x 2 patches.
constexpr int64_t kGridF = 21, kGridH = 30, kGridW = 52;
constexpr int64_t kTokens = kGridF * kGridH * kGridW;  // 32760
// Launches between two events: the first launch's queueing delay is shared by all of them.
constexpr int kLaunchesPerIteration = 10;

/// Device memory filled with 0x3F bytes: 0.747 as float32 and 0.746 as bf16, finite and non-zero,
/// which is all a memory-bound kernel's timing depends on.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(int64_t count) : bytes_(static_cast<size_t>(count) * sizeof(T)) {
    ASTRAEA_CUDA_CHECK(cudaMalloc(&data_, bytes_));
    ASTRAEA_CUDA_CHECK(cudaMemset(data_, 0x3F, bytes_));
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { ASTRAEA_CUDA_CHECK_NOEXCEPT(cudaFree(data_)); }
  T* get() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_;
  void* data_ = nullptr;
};

/// Times `launch(stream)` with CUDA events and reports bytes_per_launch as throughput.
template <typename Launch>
void time_launches(benchmark::State& state, double bytes_per_launch, Launch&& launch) {
  cudaStream_t stream;
  cudaEvent_t start, stop;
  ASTRAEA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ASTRAEA_CUDA_CHECK(cudaEventCreate(&start));
  ASTRAEA_CUDA_CHECK(cudaEventCreate(&stop));
  // The arrays' memsets and uploads ran on the legacy default stream, which a non-blocking stream does
  // not wait for; a pageable cudaMemcpy may even return before its copy lands. Without this, a launch
  // could read indices that were still the memset's 0x3F bytes.
  ASTRAEA_CUDA_CHECK(cudaDeviceSynchronize());
  launch(stream);  // warm-up: module load, first-touch
  ASTRAEA_CUDA_CHECK(cudaStreamSynchronize(stream));
  double total_s = 0.0;
  for (auto _ : state) {
    ASTRAEA_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < kLaunchesPerIteration; ++i) launch(stream);
    ASTRAEA_CUDA_CHECK(cudaEventRecord(stop, stream));
    ASTRAEA_CUDA_CHECK(cudaEventSynchronize(stop));
    float elapsed_ms = 0.0f;
    ASTRAEA_CUDA_CHECK(cudaEventElapsedTime(&elapsed_ms, start, stop));
    const double launch_s = elapsed_ms * 1e-3 / kLaunchesPerIteration;
    state.SetIterationTime(launch_s);
    total_s += launch_s;
  }
  ASTRAEA_CUDA_CHECK(cudaEventDestroy(start));
  ASTRAEA_CUDA_CHECK(cudaEventDestroy(stop));
  ASTRAEA_CUDA_CHECK(cudaStreamDestroy(stream));
  const double iterations = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes_per_launch * iterations));
  // Computed here rather than as a kIsRate counter, whose rate may be taken over CPU time.
  state.counters["GB/s"] = total_s > 0.0 ? bytes_per_launch * iterations / total_s * 1e-9 : 0.0;
}

bool skip_without_device(benchmark::State& state) {
  if (cuda_device_available()) return false;
  state.SkipWithError("no CUDA device");
  return true;
}

enum class LayerNormMode { kResidual, kAdaLayerNorm, kFused };

/// residual_layer_norm over kTokens rows of state.range(0) columns in one of its three uses.
void layer_norm_bench(benchmark::State& state, LayerNormMode mode) {
  if (skip_without_device(state)) return;
  const int64_t dim = state.range(0), n = kTokens * dim;
  const bool residual = mode != LayerNormMode::kAdaLayerNorm, norm = mode != LayerNormMode::kResidual;
  DeviceArray<float> x(n), gate(dim), mul(dim), add(dim);
  DeviceArray<bf16> y(residual ? n : 1), out(norm ? n : 1);
  // x: read and written when updated, else read; y read; out written; per-channel vectors read once.
  const double per_element = (residual ? 4 + 4 + 2 : 4) + (norm ? 2 : 0);
  const double per_channel = (residual ? 4 : 0) + (norm ? 8 : 0);
  time_launches(state, per_element * n + per_channel * dim, [&](cudaStream_t stream) {
    residual_layer_norm(x.get(), residual ? y.get() : nullptr, residual ? gate.get() : nullptr,
                        norm ? mul.get() : nullptr, norm ? add.get() : nullptr, norm ? out.get() : nullptr, kTokens,
                        dim, 1e-6f, stream);
  });
}

void BM_ResidualAdd(benchmark::State& state) { layer_norm_bench(state, LayerNormMode::kResidual); }
void BM_AdaLayerNorm(benchmark::State& state) { layer_norm_bench(state, LayerNormMode::kAdaLayerNorm); }
void BM_ResidualAdaLayerNorm(benchmark::State& state) { layer_norm_bench(state, LayerNormMode::kFused); }

/// rms_norm_rope on q of a packed [tokens, 3 * dim] qkv projection, state.range(0) heads of 128.
void BM_RmsNormRope(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const int64_t heads = state.range(0), head_dim = 128, dim = heads * head_dim;
  DeviceArray<bf16> qkv(kTokens * 3 * dim), out(kTokens * dim);
  DeviceArray<float> weight(dim), inv_freq(head_dim / 2);
  std::vector<float> inv_freq_host(head_dim / 2);
  wan_rope_inv_freq(head_dim, 10000.0, inv_freq_host.data());
  ASTRAEA_CUDA_CHECK(cudaMemcpy(inv_freq.get(), inv_freq_host.data(), inv_freq.bytes(), cudaMemcpyHostToDevice));
  const double bytes = 4.0 * kTokens * dim + 4.0 * dim + 2.0 * head_dim;  // q read and out written as bf16
  time_launches(state, bytes, [&](cudaStream_t stream) {
    rms_norm_rope(qkv.get(), 3 * dim, weight.get(), inv_freq.get(), nullptr, kGridF, kGridH, kGridW, heads, head_dim, 1e-6f,
                  out.get(), kTokens, stream);
  });
}

/// The token-wise engine's sketch width (model/token_cache.h: kSketchDim) and heads of Wan 2.1 1.3B.
constexpr int64_t kSketchDim = 8;
constexpr int64_t kHeads = 12;

template <typename T>
void upload(const DeviceArray<T>& array, const std::vector<T>& host) {
  ASTRAEA_CUDA_CHECK(cudaMemcpy(array.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
}

/// select_tokens over state.range(0) tokens, k = n / 2. Random inputs: the selection's work depends
/// on how the scores spread over the key digits, which constant memory would make degenerate.
void BM_SelectTokens(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const int64_t n = state.range(0), k = n / 2;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> stale_count(0, 5);
  std::vector<float> lse(n), sketch_old(n * kSketchDim), sketch_new(n * kSketchDim), stale(n);
  for (float& v : lse) v = 5.0f + normal(rng);
  for (float& v : sketch_old) v = normal(rng);
  for (size_t j = 0; j < sketch_new.size(); ++j) sketch_new[j] = sketch_old[j] + 0.3f * normal(rng);
  for (float& v : stale) v = static_cast<float>(stale_count(rng));
  DeviceArray<float> lse_dev(n), old_dev(n * kSketchDim), new_dev(n * kSketchDim), stale_dev(n), score(n);
  DeviceArray<int64_t> idx(k);
  DeviceArray<unsigned char> workspace(static_cast<int64_t>(select_tokens_workspace_bytes(n)));
  upload(lse_dev, lse);
  upload(old_dev, sketch_old);
  upload(new_dev, sketch_new);
  upload(stale_dev, stale);
  // lse, stale and both sketches read; scores and indices written.
  const double bytes = (4.0 + 4.0 + 8.0 * kSketchDim + 4.0) * n + 8.0 * k;
  time_launches(state, bytes, [&](cudaStream_t stream) {
    select_tokens(lse_dev.get(), new_dev.get(), old_dev.get(), kSketchDim, stale_dev.get(), 1.0f, 1.0f, n, k,
                  score.get(), idx.get(), workspace.get(), workspace.bytes(), stream);
  });
}

/// A sorted random half of kTokens, as the selection makes them.
std::vector<int64_t> random_half() {
  std::vector<int64_t> selected(kTokens);
  std::iota(selected.begin(), selected.end(), int64_t{0});
  std::shuffle(selected.begin(), selected.end(), std::mt19937(7));
  selected.resize(kTokens / 2);
  std::sort(selected.begin(), selected.end());
  return selected;
}

/// scatter_tokens of k = kTokens / 2 rows of state.range(0) columns into a cache of kTokens rows, with
/// the block's last residual update (h + y * gate) fused in.
void BM_ScatterTokens(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const int64_t dim = state.range(0), n = kTokens, k = n / 2;
  DeviceArray<float> h(k * dim), gate(dim), lse_sel(kHeads * k), sketch_new(n * kSketchDim), cache_lse(n),
      cache_sketch(n * kSketchDim), stale(n);
  DeviceArray<bf16> y(k * dim), cache(n * dim);
  DeviceArray<int64_t> idx(k);
  upload(idx, random_half());
  // h and y read, the selected rows' cache written; idx and lse_sel read; a sketch row read and written
  // and an lse written per selected token; stale updated.
  const double bytes = (4.0 + 2.0 + 2.0) * k * dim + 4.0 * dim + (8.0 + 4.0 * kHeads + 8.0 * kSketchDim + 4.0) * k +
                       8.0 * n;
  time_launches(state, bytes, [&](cudaStream_t stream) {
    scatter_tokens(h.get(), y.get(), gate.get(), idx.get(), k, lse_sel.get(), kHeads, sketch_new.get(), kSketchDim,
                   cache.get(), cache_lse.get(), cache_sketch.get(), stale.get(), n, dim, stream);
  });
}

/// gather_residual_layer_norm in the token-wise engine's two uses, over kTokens source rows of
/// state.range(0) columns: the selection pass (every row sketched and normalised) and the gather of a
/// random half (residual update, float row stored, normalised).
void gather_bench(benchmark::State& state, bool selection_pass) {
  if (skip_without_device(state)) return;
  const int64_t dim = state.range(0), rows = selection_pass ? kTokens : kTokens / 2;
  DeviceArray<bf16> src(kTokens * dim), y(rows * dim), out(rows * dim), proj(kSketchDim * dim);
  DeviceArray<float> gate(dim), mul(dim), add(dim), sketch(rows * kSketchDim), h(rows * dim);
  DeviceArray<int64_t> idx(kTokens / 2);
  upload(idx, random_half());
  GatherLayerNormArgs a;
  a.src = src.get();
  a.mul = mul.get();
  a.add = add.get();
  a.out = out.get();
  a.rows = rows;
  a.dim = dim;
  if (selection_pass) {
    a.proj = proj.get();
    a.sketch_dim = kSketchDim;
    a.sketch = sketch.get();
  } else {
    a.idx = idx.get();
    a.y = y.get();
    a.gate = gate.get();
    a.h = h.get();
  }
  // Rows read (bf16) and normalised (bf16 written); the selection pass writes the sketch, the gather
  // reads y and writes the float row.
  const double bytes = selection_pass ? (2.0 + 2.0) * rows * dim + 4.0 * kSketchDim * rows
                                      : (2.0 + 2.0 + 2.0 + 4.0) * rows * dim + 8.0 * rows;
  time_launches(state, bytes, [&](cudaStream_t stream) { gather_residual_layer_norm(a, stream); });
}

void BM_SelectionPassLayerNorm(benchmark::State& state) { gather_bench(state, true); }
void BM_GatherResidualLayerNorm(benchmark::State& state) { gather_bench(state, false); }

/// merge_attention_splits of 2 key parts for the 13104 queries of budget 0.4 (dim 1536, 12 heads of
/// 128) or 5120 (40 heads): both parts and their log-sum-exps read, the output and its lse written.
void BM_MergeAttentionSplits(benchmark::State& state) {
  if (skip_without_device(state)) return;
  constexpr int64_t kHeadDim = 128, kSplits = 2;
  const int64_t dim = state.range(0), heads = dim / kHeadDim, rows = (kTokens * 2 + 4) / 5;
  DeviceArray<bf16> parts(kSplits * rows * dim), out(rows * dim);
  DeviceArray<float> part_lse(kSplits * heads * rows), lse(heads * rows);
  const double bytes = (2.0 * kSplits + 2.0) * rows * dim + 4.0 * (kSplits + 1) * heads * rows;
  time_launches(state, bytes, [&](cudaStream_t stream) {
    merge_attention_splits(parts.get(), part_lse.get(), 1, kSplits, rows, heads, kHeadDim, out.get(),
                           lse.get(), stream);
  });
}

/// cudaMemcpyAsync of a float32 [kTokens, state.range(0)] array: what the hardware's copy reaches.
void BM_MemcpyDeviceToDevice(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const int64_t n = kTokens * state.range(0);
  DeviceArray<float> src(n), dst(n);
  time_launches(state, 2.0 * static_cast<double>(src.bytes()), [&](cudaStream_t stream) {
    ASTRAEA_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), src.bytes(), cudaMemcpyDeviceToDevice, stream));
  });
}

// Wan 2.1 1.3B: dim 1536 = 12 heads; 14B: 5120 = 40 heads.
BENCHMARK(BM_MemcpyDeviceToDevice)->Arg(1536)->Arg(5120)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResidualAdd)->Arg(1536)->Arg(5120)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AdaLayerNorm)->Arg(1536)->Arg(5120)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResidualAdaLayerNorm)->Arg(1536)->Arg(5120)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RmsNormRope)->Arg(12)->Arg(40)->UseManualTime()->Unit(benchmark::kMicrosecond);
// Wan 1.3B at 480p: 32760 tokens; 14B at 720p: 75600.
BENCHMARK(BM_SelectTokens)->Arg(32760)->Arg(75600)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ScatterTokens)->Arg(1536)->Arg(5120)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SelectionPassLayerNorm)->Arg(1536)->Arg(5120)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GatherResidualLayerNorm)->Arg(1536)->Arg(5120)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MergeAttentionSplits)->Arg(1536)->Arg(5120)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace astraea::kernels

#else  // no CUDA kernels in this build

namespace {
void BM_Kernels(benchmark::State& state) { state.SkipWithError("no CUDA device (built without CUDA kernels)"); }
BENCHMARK(BM_Kernels);
}  // namespace

#endif  // ASTRAEA_HAS_CUDA_KERNELS

BENCHMARK_MAIN();
