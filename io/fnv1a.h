// 64-bit FNV-1a: a fast, stable digest for keys and seeds (not for security).
#pragma once

#include <cstddef>
#include <cstdint>

namespace astraea {

inline constexpr uint64_t kFnv1aBasis = 1469598103934665603ull;

/// FNV-1a of `n` bytes at `data`, continuing from `h` (kFnv1aBasis to start), so that a long
/// input can be digested piece by piece.
inline uint64_t fnv1a(const void* data, size_t n, uint64_t h = kFnv1aBasis) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  return h;
}

}  // namespace astraea
