// CPU threading: one pool, ATen's, as wide as the CPUs nobody else is using.
#pragma once

#include <string>

namespace astraea {

/// How wide ATen's intra-op pool is, and why.
struct CpuThreads {
  int threads = 1;
  int cpus = 1;         // CPUs this process may run on (its affinity mask)
  int busy_others = 0;  // runnable tasks of other processes when it was chosen
  bool from_env = false;
  std::string describe() const;  // "1 of 2 CPUs, 2 busy with other work"
};

/// Picks the pool's width, unless ASTRAEA_CPU_THREADS names it: the CPUs in the affinity mask less
/// those other runnable tasks hold (/proc/loadavg), at least one. A pool wider than the idle CPUs
/// waits at every barrier for a thread the scheduler has parked: beside two busy processes on 2 CPUs,
/// a tiny step took 5 s with 2 threads, and the slowest budgets were the ones with most barriers,
/// not most work. OpenBLAS stays single-threaded inside the pool (unless OPENBLAS_NUM_THREADS is
/// set): with both pools at full width on 2 cores, generation ran 2.7x slower (docs/perf.md).
/// Call once, early in main. Throws std::invalid_argument naming ASTRAEA_CPU_THREADS if it is bad.
CpuThreads configure_cpu_threads();

/// What configure_cpu_threads chose; threads 0 if it was never called.
const CpuThreads& cpu_threads();

/// The choice itself, for tests: `cpus` usable, `runnable` from /proc/loadavg (ourselves included).
int cpu_threads_for(int cpus, int runnable);

}  // namespace astraea
