// Types shared by every kernel's public header. No CUDA header here: callers without a CUDA
// toolkit (the CPU build, model/'s LibTorch code) include this too.
#pragma once

#include <cstdint>
#include <cstring>

// Declared at global scope so that Stream below names the very type cudaStream_t points to.
struct CUstream_st;

namespace astraea::kernels {

/// A CUDA stream; the same type as cudaStream_t. nullptr is the legacy default stream.
using Stream = struct CUstream_st*;

/// bfloat16 storage: the upper 16 bits of an IEEE float32. Arithmetic happens in float.
struct bf16 {
  uint16_t bits;
};

/// Exact widening: bf16 is a float32 with its low 16 mantissa bits zero.
inline float bf16_to_float(bf16 value) {
  const uint32_t wide = uint32_t{value.bits} << 16;
  float result;
  std::memcpy(&result, &wide, sizeof result);
  return result;
}

/// Rounds to nearest, ties to even (as the GPU's cvt.rn.bf16 does); overflow gives inf, NaN stays NaN.
inline bf16 float_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
    // Truncating a NaN whose payload sits in the low 16 bits would give inf: force the quiet bit.
    return bf16{static_cast<uint16_t>((bits >> 16) | 0x0040u)};
  }
  const uint32_t round_to_even = 0x7FFFu + ((bits >> 16) & 1u);
  return bf16{static_cast<uint16_t>((bits + round_to_even) >> 16)};
}

/// True when the kernels were built with CUDA and the runtime sees at least one device. Never throws.
bool cuda_device_available() noexcept;

}  // namespace astraea::kernels
