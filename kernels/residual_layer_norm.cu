#include "kernels/cuda_check.h"
#include "kernels/detail/row_io.cuh"
#include "kernels/residual_layer_norm.cuh"

namespace astraea::kernels {

namespace {

using detail::block_sum;
using detail::kVectorElems;

// Both public forms run the same kernels: a row is read from the float residual x (updated in place)
// or from bf16 source rows (then written to x only when x is given), optionally updated by y * gate,
// optionally sketched, and optionally normalised into out.
struct ResidualLayerNormArgs {
  float* x;
  const bf16* src;
  const int64_t* src_rows;
  const bf16* y;
  const float* gate;
  const float* mul;
  const float* add;
  const bf16* proj;
  float* sketch;
  bf16* out;
  int sketch_dim;
  int dim;
  float inv_dim;
  float eps;
};

// Vector-path CTAs get 512 threads at most (more rows in flight per SM), scalar ones up to 1024.
constexpr int max_threads(int vec) { return vec == kVectorElems ? 512 : 1024; }

__device__ __forceinline__ const bf16* source_row(const ResidualLayerNormArgs& a) {
  if (a.src == nullptr) return nullptr;
  const int64_t row = a.src_rows != nullptr ? __ldg(a.src_rows + blockIdx.x) : blockIdx.x;
  return a.src + row * a.dim;
}

/// sketch[row, j] = the block-wide sum of each thread's partial dot products acc[j].
__device__ __forceinline__ void store_sketch(const ResidualLayerNormArgs& a, float (&acc)[kMaxSketchDim]) {
  __shared__ float partials[kMaxSketchDim][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < kMaxSketchDim; ++j) {
    if (j >= a.sketch_dim) break;
    const float s = detail::warp_sum(acc[j]);
    if (lane == 0) partials[j][warp] = s;
  }
  __syncthreads();
  if (threadIdx.x < a.sketch_dim) {
    float s = 0.0f;  // warps in a fixed order: the same sum on every run
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) s += partials[threadIdx.x][w];
    a.sketch[static_cast<int64_t>(blockIdx.x) * a.sketch_dim + threadIdx.x] = s;
  }
}

/// One CTA per row, the row held in registers: thread i owns elements [(k * blockDim + i) * kVec, +kVec)
/// for k < kItems, so every access of a warp is contiguous and each byte is read once.
template <int kVec, int kItems>
__global__ void __launch_bounds__(max_threads(kVec)) residual_layer_norm_resident(const ResidualLayerNormArgs a) {
  __shared__ float partials[2][32];
  const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * a.dim;
  float* x = a.x != nullptr ? a.x + row_offset : nullptr;
  const bf16* src = source_row(a);
  const bool store_x = x != nullptr && (src != nullptr || a.y != nullptr);

  float v[kItems][kVec];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int col = (i * blockDim.x + threadIdx.x) * kVec;
    if (col >= a.dim) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[i][k] = 0.0f;
      continue;
    }
    if (src != nullptr) {
      detail::load_bf16<kVec>(src + col, v[i]);
    } else {
      detail::load_f32<kVec>(x + col, v[i]);
    }
    if (a.y != nullptr) {
      float y[kVec], gate[kVec];
      detail::load_bf16<kVec>(a.y + row_offset + col, y);
      detail::load_param<kVec>(a.gate == nullptr ? nullptr : a.gate + col, 1.0f, gate);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[i][k] = __fmaf_rn(y[k], gate[k], v[i][k]);  // as the CPU's std::fma
    }
    if (store_x) detail::store_f32<kVec>(x + col, v[i]);
  }
  if (a.sketch != nullptr) {  // uniform over the block, as is every branch before a barrier here
    // proj rows are contiguous over columns: each thread reads its own columns of every row, so a
    // warp's loads are contiguous. proj is bf16: with 8 x dim floats the pass took 204 us for 32760
    // rows of 1536 on an H200, with bf16 141 us (it is read from L1 or L2 for every row).
    float acc[kMaxSketchDim];
#pragma unroll
    for (int j = 0; j < kMaxSketchDim; ++j) acc[j] = 0.0f;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int col = (i * blockDim.x + threadIdx.x) * kVec;
      if (col >= a.dim) continue;
#pragma unroll
      for (int j = 0; j < kMaxSketchDim; ++j) {
        if (j >= a.sketch_dim) break;
        float p[kVec];
        detail::load_bf16<kVec>(a.proj + static_cast<int64_t>(j) * a.dim + col, p);
#pragma unroll
        for (int k = 0; k < kVec; ++k) acc[j] = __fmaf_rn(v[i][k], p[k], acc[j]);
      }
    }
    store_sketch(a, acc);
  }
  if (a.out == nullptr) return;

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

/// Fallback for rows too long for registers: passes over global memory, scalar accesses, each pass
/// recomputing the row from its inputs. Each thread touches only its own columns, so the final store
/// of x needs no barrier.
__global__ void __launch_bounds__(1024) residual_layer_norm_streaming(const ResidualLayerNormArgs a) {
  __shared__ float partials[2][32];
  const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * a.dim;
  float* x = a.x != nullptr ? a.x + row_offset : nullptr;
  const bf16* src = source_row(a);
  const auto value = [&](int c) {
    float v = src != nullptr ? detail::widen(src[c]) : x[c];
    if (a.y != nullptr) {
      const float y = detail::widen(a.y[row_offset + c]);
      v = __fmaf_rn(y, a.gate != nullptr ? __ldg(a.gate + c) : 1.0f, v);
    }
    return v;
  };
  const bool store_x = x != nullptr && (src != nullptr || a.y != nullptr);
  float sum = 0.0f;
  float acc[kMaxSketchDim];
#pragma unroll
  for (int j = 0; j < kMaxSketchDim; ++j) acc[j] = 0.0f;
  for (int c = threadIdx.x; c < a.dim; c += blockDim.x) {
    const float v = value(c);
    if (a.sketch != nullptr) {
#pragma unroll
      for (int j = 0; j < kMaxSketchDim; ++j) {
        if (j >= a.sketch_dim) break;
        acc[j] = __fmaf_rn(v, detail::widen(a.proj[static_cast<int64_t>(j) * a.dim + c]), acc[j]);
      }
    }
    sum += v;
  }
  if (a.sketch != nullptr) store_sketch(a, acc);
  // x is stored last, so every pass recomputes the same value from the unchanged inputs.
  if (a.out != nullptr) {
    const float mean = block_sum(sum, partials[0]) * a.inv_dim;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < a.dim; c += blockDim.x) squares += (value(c) - mean) * (value(c) - mean);
    const float rstd = rsqrtf(block_sum(squares, partials[1]) * a.inv_dim + a.eps);
    for (int c = threadIdx.x; c < a.dim; c += blockDim.x) {
      const float mul = a.mul != nullptr ? __ldg(a.mul + c) : 1.0f;
      const float add = a.add != nullptr ? __ldg(a.add + c) : 0.0f;
      a.out[row_offset + c].bits =
          __bfloat16_as_ushort(__float2bfloat16_rn(__fmaf_rn((value(c) - mean) * rstd, mul, add)));
    }
  }
  if (store_x) {
    for (int c = threadIdx.x; c < a.dim; c += blockDim.x) x[c] = value(c);
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

void launch(const ResidualLayerNormArgs& a, int64_t rows, cudaStream_t stream) {
  using detail::aligned_16;
  const bool vectors = a.dim % kVectorElems == 0 && aligned_16(a.x) && aligned_16(a.src) && aligned_16(a.y) &&
                       aligned_16(a.gate) && aligned_16(a.mul) && aligned_16(a.add) && aligned_16(a.proj) &&
                       aligned_16(a.out);
  const int grid = static_cast<int>(rows);
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

}  // namespace

void residual_layer_norm(float* x, const bf16* y, const float* gate, const float* mul, const float* add, bf16* out,
                         int64_t rows, int64_t dim, float eps, Stream stream) {
  detail::validate_residual_layer_norm(x, y, out, rows, dim, eps);
  if (rows == 0 || dim == 0 || (y == nullptr && out == nullptr)) return;
  const ResidualLayerNormArgs a{x,     nullptr, nullptr, y, gate, mul, add, nullptr, nullptr, out, 0,
                                static_cast<int>(dim), 1.0f / static_cast<float>(dim), eps};
  launch(a, rows, stream);
}

void gather_residual_layer_norm(const GatherLayerNormArgs& g, Stream stream) {
  detail::validate_gather_residual_layer_norm(g);
  if (g.rows == 0 || (g.h == nullptr && g.sketch == nullptr && g.out == nullptr)) return;
  if (g.dim == 0) {  // nothing to read: the sketch of an empty row is 0
    if (g.sketch != nullptr)
      ASTRAEA_CUDA_CHECK(cudaMemsetAsync(g.sketch, 0, g.rows * g.sketch_dim * sizeof(float), stream));
    return;
  }
  const ResidualLayerNormArgs a{g.h,
                                g.src,
                                g.idx,
                                g.y,
                                g.gate,
                                g.mul,
                                g.add,
                                g.proj,
                                g.sketch,
                                g.out,
                                static_cast<int>(g.sketch_dim),
                                static_cast<int>(g.dim),
                                1.0f / static_cast<float>(g.dim),
                                g.eps};
  launch(a, g.rows, stream);
}

}  // namespace astraea::kernels
