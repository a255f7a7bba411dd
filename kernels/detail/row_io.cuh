// Device-side pieces shared by the row kernels: vector loads/stores of one row and a block sum.
// Private to the .cu files of kernels/; never included by a public header.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/types.h"

namespace astraea::kernels::detail {

/// Elements per thread access on the vector path: 8 bf16 = 16 bytes, 8 floats = two 16-byte accesses.
inline constexpr int kVectorElems = 8;

inline bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
inline int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }
/// Threads for one CTA that loops over a row of `columns` in accesses of `vec`: whole warps, one
/// access each where that fits in `max_threads`, at least one warp.
inline int row_threads(int64_t columns, int vec, int max_threads) {
  const int warps = ceil_div(ceil_div(columns, vec), 32);
  return warps < 1 ? 32 : warps * 32 > max_threads ? max_threads : warps * 32;
}

/// One bf16 as a float (exact: bf16 is a float without its low 16 bits).
__device__ __forceinline__ float widen(bf16 value) { return __uint_as_float(uint32_t{value.bits} << 16); }

/// Loads kVec consecutive bf16 as floats; kVec == 8 needs 16-byte alignment, other widths are scalar.
template <int kVec>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&v)[kVec]) {
  if constexpr (kVec == kVectorElems) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {  // little-endian: the lower half of each word is the earlier element
      v[2 * k] = __uint_as_float(words[k] << 16);
      v[2 * k + 1] = __uint_as_float(words[k] & 0xFFFF0000u);
    }
  } else {
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = widen(p[k]);
  }
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);  // one cvt.rn.bf16x2.f32
  return *reinterpret_cast<const uint32_t*>(&pair);
}

/// Rounds kVec floats to bf16 (nearest even) and stores them.
template <int kVec>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&v)[kVec]) {
  if constexpr (kVec == kVectorElems) {
    *reinterpret_cast<uint4*>(p) =
        make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]), pack_bf16x2(v[4], v[5]), pack_bf16x2(v[6], v[7]));
  } else {
#pragma unroll
    for (int k = 0; k < kVec; ++k) p[k].bits = __bfloat16_as_ushort(__float2bfloat16_rn(v[k]));
  }
}

/// Loads kVec floats that the kernel also writes (no read-only cache path).
template <int kVec>
__device__ __forceinline__ void load_f32(const float* p, float (&v)[kVec]) {
  if constexpr (kVec == kVectorElems) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = p[k];
  }
}

/// Loads kVec read-only floats (per-channel parameters, shared by every row: they stay in L1/L2),
/// or fills `fallback` when p is null.
template <int kVec>
__device__ __forceinline__ void load_param(const float* p, float fallback, float (&v)[kVec]) {
  if (p == nullptr) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = fallback;
  } else if constexpr (kVec == kVectorElems) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = __ldg(p + k);
  }
}

template <int kVec>
__device__ __forceinline__ void store_f32(float* p, const float (&v)[kVec]) {
  if constexpr (kVec == kVectorElems) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else {
#pragma unroll
    for (int k = 0; k < kVec; ++k) p[k] = v[k];
  }
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xFFFFFFFFu, value, offset);
  return value;
}

/// Sum over the block, returned to every thread (bitwise equal everywhere: the xor butterfly adds the
/// same pairs in every lane). blockDim.x must be a multiple of 32. `partials` (32 floats of shared
/// memory) must not be reused by a later block_sum before another barrier.
__device__ __forceinline__ float block_sum(float value, float* partials) {
  value = warp_sum(value);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) partials[warp] = value;
  __syncthreads();
  // Every warp reduces the partials itself, which saves the barrier a broadcast would need.
  value = lane < static_cast<int>(blockDim.x / 32) ? partials[lane] : 0.0f;
  return warp_sum(value);
}

}  // namespace astraea::kernels::detail
