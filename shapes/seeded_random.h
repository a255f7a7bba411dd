// Draws from mt19937_64 that are the same on every standard library: mt19937_64 is specified bit
// for bit, but <random>'s distributions are not, and a prompt or layout must not change with them.
#pragma once

#include <random>

namespace astraea::shapes {

/// Uniform in [0, 1), from the top 53 bits of one draw.
inline double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
/// Uniform in [LO, HI).
inline double uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * uniform01(rng); }

}  // namespace astraea::shapes
