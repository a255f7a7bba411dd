// CPU threading: one pool, ATen's.
#pragma once

namespace astraea {

/// Gives ATen's intra-op pool every core and keeps OpenBLAS single-threaded inside it (unless
/// OPENBLAS_NUM_THREADS is set). With both pools at full width on 2 cores, generation of the tiny
/// model ran 2.7x slower (0.418 s against 0.155 s a call, docs/perf.md). Call once, early in main.
void configure_cpu_threads();

}  // namespace astraea
