#include "kernels/cuda_check.h"
#include "kernels/detail/row_io.cuh"
#include "kernels/residual_layer_norm.cuh"

namespace astraea::kernels {

namespace {

using detail::block_sum;
using detail::kVectorElems;

struct ResidualLayerNormArgs {
  float* x;
  const bf16* y;
  const float* gate;
  const float* mul;
  const float* add;
  bf16* out;
  int dim;
  float inv_dim;
  float eps;
};

// Vector-path CTAs get 512 threads at most (more rows in flight per SM), scalar ones up to 1024.
constexpr int max_threads(int vec) { return vec == kVectorElems ? 512 : 1024; }

/// One CTA per row, the row held in registers: thread i owns elements [(k * blockDim + i) * kVec, +kVec)
/// for k < kItems, so every access of a warp is contiguous and each byte is read once.
template <int kVec, int kItems>
__global__ void __launch_bounds__(max_threads(kVec)) residual_layer_norm_resident(const ResidualLayerNormArgs a) {
  __shared__ float partials[2][32];
  const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * a.dim;
  float* x = a.x + row_offset;

  float v[kItems][kVec];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int col = (i * blockDim.x + threadIdx.x) * kVec;
    if (col >= a.dim) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[i][k] = 0.0f;
      continue;
    }
    detail::load_f32<kVec>(x + col, v[i]);
    if (a.y != nullptr) {
      float y[kVec], gate[kVec];
      detail::load_bf16<kVec>(a.y + row_offset + col, y);
      detail::load_param<kVec>(a.gate == nullptr ? nullptr : a.gate + col, 1.0f, gate);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[i][k] = __fmaf_rn(y[k], gate[k], v[i][k]);  // as the CPU's std::fma
      detail::store_f32<kVec>(x + col, v[i]);
    }
  }
  if (a.out == nullptr) return;  // uniform over the block: no barrier is skipped by part of it

  float sum = 0.0f;  // out-of-row slots hold 0 and add nothing
#pragma unroll
  for (int i = 0; i < kItems; ++i)
#pragma unroll
    for (int k = 0; k < kVec; ++k) sum += v[i][k];
  const float mean = block_sum(sum, partials[0]) * a.inv_dim;

  // Two passes over registers: squares of deviations, which stays accurate when |mean| >> std.
  float squares = 0.0f;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int col = (i * blockDim.x + threadIdx.x) * kVec;
    if (col >= a.dim) continue;
#pragma unroll
    for (int k = 0; k < kVec; ++k) squares += (v[i][k] - mean) * (v[i][k] - mean);
  }
  const float rstd = rsqrtf(block_sum(squares, partials[1]) * a.inv_dim + a.eps);

  bf16* out = a.out + row_offset;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int col = (i * blockDim.x + threadIdx.x) * kVec;
    if (col >= a.dim) continue;
    float mul[kVec], add[kVec];
    detail::load_param<kVec>(a.mul == nullptr ? nullptr : a.mul + col, 1.0f, mul);
    detail::load_param<kVec>(a.add == nullptr ? nullptr : a.add + col, 0.0f, add);
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[i][k] = __fmaf_rn((v[i][k] - mean) * rstd, mul[k], add[k]);
    detail::store_bf16<kVec>(out + col, v[i]);
  }
}

/// Fallback for rows too long for registers: three passes over global memory, scalar accesses.
/// Each thread revisits only the columns it wrote itself, so no barrier is needed between passes.
__global__ void __launch_bounds__(1024) residual_layer_norm_streaming(const ResidualLayerNormArgs a) {
  __shared__ float partials[2][32];
  const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * a.dim;
  float* x = a.x + row_offset;
  float sum = 0.0f;
  for (int c = threadIdx.x; c < a.dim; c += blockDim.x) {
    float v = x[c];
    if (a.y != nullptr) {
      const float y = __uint_as_float(uint32_t{a.y[row_offset + c].bits} << 16);
      v = __fmaf_rn(y, a.gate != nullptr ? __ldg(a.gate + c) : 1.0f, v);
      x[c] = v;
    }
    sum += v;
  }
  if (a.out == nullptr) return;
  const float mean = block_sum(sum, partials[0]) * a.inv_dim;
  float squares = 0.0f;
  for (int c = threadIdx.x; c < a.dim; c += blockDim.x) squares += (x[c] - mean) * (x[c] - mean);
  const float rstd = rsqrtf(block_sum(squares, partials[1]) * a.inv_dim + a.eps);
  for (int c = threadIdx.x; c < a.dim; c += blockDim.x) {
    const float mul = a.mul != nullptr ? __ldg(a.mul + c) : 1.0f;
    const float add = a.add != nullptr ? __ldg(a.add + c) : 0.0f;
    a.out[row_offset + c].bits = __bfloat16_as_ushort(__float2bfloat16_rn(__fmaf_rn((x[c] - mean) * rstd, mul, add)));
  }
}

/// Launches the first kItems (smallest first) whose CTA fits max_threads(kVec); false if none does.
template <int kVec, int kItems, int... kMoreItems>
bool launch_resident(const ResidualLayerNormArgs& a, int rows, cudaStream_t stream) {
  const int threads = 32 * detail::ceil_div(detail::ceil_div(a.dim / kVec, kItems), 32);
  if (threads <= max_threads(kVec)) {
    residual_layer_norm_resident<kVec, kItems><<<rows, threads, 0, stream>>>(a);
    ASTRAEA_CUDA_CHECK_LAUNCH();
    return true;
  }
  if constexpr (sizeof...(kMoreItems) > 0) {
    return launch_resident<kVec, kMoreItems...>(a, rows, stream);
  } else {
    return false;
  }
}

}  // namespace

void residual_layer_norm(float* x, const bf16* y, const float* gate, const float* mul, const float* add, bf16* out,
                         int64_t rows, int64_t dim, float eps, Stream stream) {
  detail::validate_residual_layer_norm(x, y, out, rows, dim, eps);
  if (rows == 0 || dim == 0 || (y == nullptr && out == nullptr)) return;
  const ResidualLayerNormArgs a{x, y, gate, mul, add, out, static_cast<int>(dim), 1.0f / static_cast<float>(dim), eps};
  const int grid = static_cast<int>(rows);
  using detail::aligned_16;
  const bool vectors = dim % kVectorElems == 0 && aligned_16(x) && aligned_16(y) && aligned_16(gate) &&
                       aligned_16(mul) && aligned_16(add) && aligned_16(out);
  // Vector path: two 16-byte items per thread at least, so twice the bytes are in flight per thread;
  // on an H100 this took dim 1536 from 2.80 to 2.95 TB/s, and 4 or 8 items slowed dim 5120.
  // Up to 8 x 8 x 512 = 32768 columns there, and 16 x 1024 on the scalar path.
  const bool launched =
      vectors ? launch_resident<kVectorElems, 2, 4, 8>(a, grid, stream) : launch_resident<1, 1, 4, 16>(a, grid, stream);
  if (!launched) {
    residual_layer_norm_streaming<<<grid, 1024, 0, stream>>>(a);
    ASTRAEA_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace astraea::kernels
