#include "model/cpu_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace astraea {
namespace {

CpuThreads g_chosen{0, 0, 0, false};

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Field 4 of /proc/loadavg is "runnable/total" at this instant; -1 where it cannot be read.
int runnable_now() {
  std::ifstream in("/proc/loadavg");
  double l1 = 0, l5 = 0, l15 = 0;
  int runnable = -1;
  char slash = 0;
  if (in >> l1 >> l5 >> l15 >> runnable >> slash && slash == '/') return runnable;
  return -1;
}

}  // namespace

int cpu_threads_for(int cpus, int runnable) {
  const int others = std::max(0, runnable - 1);
  return std::max(1, cpus - others);
}

std::string CpuThreads::describe() const {
  std::string s = std::to_string(threads) + (threads == 1 ? " thread" : " threads") + " on " + std::to_string(cpus) +
                  (cpus == 1 ? " CPU" : " CPUs");
  if (from_env) return s + " (ASTRAEA_CPU_THREADS)";
  if (busy_others > 0) s += ", " + std::to_string(busy_others) + " busy with other work";
  return s;
}

CpuThreads configure_cpu_threads() {
  CpuThreads c;
  c.cpus = usable_cpus();
  if (const char* env = std::getenv("ASTRAEA_CPU_THREADS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (*end != '\0' || n < 1 || n > 4096) {
      throw std::invalid_argument(std::string("ASTRAEA_CPU_THREADS: '") + env + "' is not a thread count (1 to 4096)");
    }
    c.threads = static_cast<int>(n);
    c.from_env = true;
  } else {
    const int runnable = runnable_now();  // -1, unreadable, counts as no one else running
    c.busy_others = std::max(0, runnable - 1);
    c.threads = cpu_threads_for(c.cpus, runnable);
  }
  at::set_num_threads(c.threads);
  g_chosen = c;
  if (std::getenv("OPENBLAS_NUM_THREADS") != nullptr) return c;
  // Looked up at run time: LibTorch may be linked against another BLAS, or none.
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(1);
  return c;
}

const CpuThreads& cpu_threads() { return g_chosen; }

}  // namespace astraea
