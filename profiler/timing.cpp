#include "profiler/timing.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>

#include "astraea/config.h"
#include "model/cpu_threads.h"
#include "model/torch_compat.h"
#if ASTRAEA_HAS_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#endif

namespace astraea::profiler {
namespace {

double steady_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class WallTimer : public IntervalTimer {
 public:
  explicit WallTimer(at::Device device) : device_(device) {}
  std::string clock() const override { return "wall"; }
  double time_ms(const std::function<void()>& fn) override {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    compat::synchronize(device_);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  at::Device device_;
};

#if ASTRAEA_HAS_TORCH_CUDA
class CudaEventTimer : public IntervalTimer {
 public:
  std::string clock() const override { return "cuda-event"; }
  double time_ms(const std::function<void()>& fn) override {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    auto stream = at::cuda::getCurrentCUDAStream();
    start.record(stream);
    fn();
    stop.record(stream);
    stop.synchronize();
    return start.elapsed_time(stop);
  }
};

// NVML through dlopen: the clocks the card runs at now, without linking the driver's library.
struct Nvml {
  using Init = int (*)();
  using Handle = int (*)(unsigned, void**);
  using Clock = int (*)(void*, int, unsigned*);
  void* lib = nullptr;
  Handle by_index = nullptr;
  Clock clock = nullptr, max_clock = nullptr;
  Nvml() {
    lib = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!lib) return;
    auto init = reinterpret_cast<Init>(dlsym(lib, "nvmlInit_v2"));
    by_index = reinterpret_cast<Handle>(dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
    clock = reinterpret_cast<Clock>(dlsym(lib, "nvmlDeviceGetClockInfo"));
    max_clock = reinterpret_cast<Clock>(dlsym(lib, "nvmlDeviceGetMaxClockInfo"));
    if (!init || !by_index || !clock || !max_clock || init() != 0) by_index = nullptr;
  }
};
#endif

}  // namespace

std::unique_ptr<IntervalTimer> make_timer(const at::Device& device) {
#if ASTRAEA_HAS_TORCH_CUDA
  if (device.is_cuda()) return std::make_unique<CudaEventTimer>();
#endif
  return std::make_unique<WallTimer>(device);
}

TimingStats summarize(std::vector<double> samples) {
  if (samples.empty()) throw std::invalid_argument("summarize: no samples");
  TimingStats s;
  std::sort(samples.begin(), samples.end());
  const size_t n = samples.size();
  s.median_ms = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
  s.min_ms = samples.front();
  s.max_ms = samples.back();
  s.mean_ms = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(n);
  double var = 0;
  for (double x : samples) var += (x - s.mean_ms) * (x - s.mean_ms);
  var = n > 1 ? var / static_cast<double>(n - 1) : 0.0;
  s.noise = s.mean_ms > 0 ? std::sqrt(var) / s.mean_ms : 0.0;
  s.reps = static_cast<int>(n);
  return s;
}

std::vector<TimingStats> measure_interleaved(const std::vector<Sampler>& variants, const TimingOptions& o,
                                             uint64_t seed, const std::function<double()>& elapsed_s,
                                             const RoundCallback& on_round) {
  if (o.min_reps < 1 || o.max_reps < o.min_reps) {
    throw std::invalid_argument("timing: need 1 <= min_reps <= max_reps, got " + std::to_string(o.min_reps) + " and " +
                                std::to_string(o.max_reps));
  }
  if (variants.empty()) throw std::invalid_argument("timing: no variants to time");
  const auto clock = elapsed_s ? elapsed_s : std::function<double()>(steady_s);
  const size_t n = variants.size();
  for (int i = 0; i < o.warmup; ++i)
    for (const auto& v : variants) v();
  std::vector<std::vector<double>> samples(n);
  std::vector<TimingStats> stats(n);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::mt19937_64 rng(seed);
  const double limit_s = o.max_seconds * static_cast<double>(n);
  const double t0 = clock();
  bool all_quiet = false;
  for (int round = 1; round <= o.max_reps; ++round) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) samples[i].push_back(variants[i]());
    all_quiet = true;
    for (size_t i = 0; i < n; ++i) {
      stats[i] = summarize(samples[i]);
      all_quiet = all_quiet && stats[i].noise < o.noise;
    }
    if (on_round) on_round(round, stats);
    if (round < o.min_reps) continue;
    if (all_quiet || clock() - t0 >= limit_s) break;
  }
  // A variant is converged when its own noise ended under the target, whether or not the others' did.
  for (auto& s : stats) s.converged = s.noise < o.noise;
  return stats;
}

TimingStats measure(const std::function<void()>& fn, IntervalTimer& timer, const TimingOptions& o,
                    const std::function<double()>& elapsed_s) {
  auto s = measure_interleaved({[&] { return timer.time_ms(fn); }}, o, 0, elapsed_s).front();
  s.clock = timer.clock();
  return s;
}

nlohmann::json environment(const at::Device& device) {
  nlohmann::json e;
  e["libtorch"] = TORCH_VERSION;
  e["host_threads"] = at::get_num_threads();
  e["device"] = compat::device_name(device);
  if (cpu_threads().threads > 0) e["cpu_threads"] = cpu_threads().describe();
#if ASTRAEA_HAS_TORCH_CUDA
  if (device.is_cuda()) {
    const int index = device.has_index() ? device.index() : 0;
    int v = 0;
    if (cudaDriverGetVersion(&v) == cudaSuccess) e["cuda_driver_api"] = v;
    if (cudaRuntimeGetVersion(&v) == cudaSuccess) e["cuda_runtime"] = v;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, index) == cudaSuccess) e["sm_clock_max_mhz"] = v / 1000;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, index) == cudaSuccess) e["mem_clock_max_mhz"] = v / 1000;
    static Nvml nvml;
    void* handle = nullptr;
    unsigned mhz = 0;
    if (nvml.by_index && nvml.by_index(static_cast<unsigned>(index), &handle) == 0) {
      if (nvml.clock(handle, 1, &mhz) == 0) e["sm_clock_mhz"] = mhz;  // NVML_CLOCK_SM
      if (nvml.clock(handle, 2, &mhz) == 0) e["mem_clock_mhz"] = mhz; // NVML_CLOCK_MEM
      if (nvml.max_clock(handle, 1, &mhz) == 0) e["sm_clock_max_mhz"] = mhz;
    }
  }
#endif
  return e;
}

}  // namespace astraea::profiler
