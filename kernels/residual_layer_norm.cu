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
  const float* proj;
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

/// Each thread's partial sketch of kRows rows it holds (v[r][i][k]: column (i * blockDim + t) * kVec
/// + k of row r): acc[r * kMaxSketchDim + j] = sum over its columns of v * proj[j]. proj rows are
/// contiguous over columns, so a warp's loads are contiguous, and the sketch_dim x dim floats stay in
/// L1 across the rows of an SM; each load serves kRows rows. Summed in the same order whatever kRows.
template <int kRows, int kItems, int kVec>
__device__ __forceinline__ void sketch_partials(const ResidualLayerNormArgs& a, const float (&v)[kRows][kItems][kVec],
                                                float (&acc)[kRows * kMaxSketchDim]) {
#pragma unroll
  for (int n = 0; n < kRows * kMaxSketchDim; ++n) acc[n] = 0.0f;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int col = (i * blockDim.x + threadIdx.x) * kVec;
    if (col >= a.dim) continue;
#pragma unroll
    for (int j = 0; j < kMaxSketchDim; ++j) {
      if (j >= a.sketch_dim) break;
      float p[kVec];
      detail::load_param<kVec>(a.proj + static_cast<int64_t>(j) * a.dim + col, 0.0f, p);
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int k = 0; k < kVec; ++k) acc[r * kMaxSketchDim + j] = __fmaf_rn(v[r][i][k], p[k], acc[r * kMaxSketchDim + j]);
    }
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
    float acc[kMaxSketchDim];
    sketch_partials<1, kItems, kVec>(a, reinterpret_cast<const float(&)[1][kItems][kVec]>(v), acc);
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
    float v = src != nullptr ? __uint_as_float(uint32_t{src[c].bits} << 16) : x[c];
    if (a.y != nullptr) {
      const float y = __uint_as_float(uint32_t{a.y[row_offset + c].bits} << 16);
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
        acc[j] = __fmaf_rn(v, __ldg(a.proj + static_cast<int64_t>(j) * a.dim + c), acc[j]);
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

/// Sums of kN values over the block, each returned to every thread (as block_sum, for several at
/// once: one barrier). `partials` must not be reused by a later call before another barrier.
template <int kN>
__device__ __forceinline__ void block_sums(float (&values)[kN], float (*partials)[32]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int n = 0; n < kN; ++n) {
    const float v = detail::warp_sum(values[n]);
    if (lane == 0) partials[n][warp] = v;
  }
  __syncthreads();
#pragma unroll
  for (int n = 0; n < kN; ++n) values[n] = detail::warp_sum(lane < static_cast<int>(blockDim.x / 32) ? partials[n][lane] : 0.0f);
}

/// The selection pass with kRows rows per CTA (bf16 source rows, no residual update, no float
/// row stored): each projection value is read from L1 once for kRows rows, where the one-row kernel
/// reads it once per row and is bound by L1 (203 us against 87 us for the LayerNorm alone, dim
/// 1536 on an H200). Vector path only; thread t owns the same columns in every row.
template <int kItems, int kRows>
__global__ void __launch_bounds__(256) sketch_layer_norm_rows(const ResidualLayerNormArgs a, int rows) {
  __shared__ float sketch_sums[kRows * kMaxSketchDim][32];
  __shared__ float stat_partials[2][kRows][32];
  constexpr int kVec = kVectorElems;
  const int first = blockIdx.x * kRows;
  float v[kRows][kItems][kVec];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const bool valid = first + r < rows;
    const int64_t src_row = !valid ? 0 : a.src_rows != nullptr ? __ldg(a.src_rows + first + r) : first + r;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int col = (i * blockDim.x + threadIdx.x) * kVec;
      if (!valid || col >= a.dim) {
#pragma unroll
        for (int k = 0; k < kVec; ++k) v[r][i][k] = 0.0f;
      } else {
        detail::load_bf16<kVec>(a.src + src_row * a.dim + col, v[r][i]);
      }
    }
  }
  // Sketch: one projection load serves every row of the CTA.
  float acc[kRows * kMaxSketchDim];
  sketch_partials<kRows, kItems, kVec>(a, v, acc);
  {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int j = 0; j < kMaxSketchDim; ++j) {
        if (j >= a.sketch_dim) break;
        const float sum = detail::warp_sum(acc[r * kMaxSketchDim + j]);
        if (lane == 0) sketch_sums[r * kMaxSketchDim + j][warp] = sum;
      }
    __syncthreads();
    for (int t = threadIdx.x; t < kRows * a.sketch_dim; t += blockDim.x) {
      const int r = t / a.sketch_dim, j = t % a.sketch_dim;
      if (first + r >= rows) continue;
      float sum = 0.0f;  // warps in a fixed order, as store_sketch
      for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) sum += sketch_sums[r * kMaxSketchDim + j][w];
      a.sketch[static_cast<int64_t>(first + r) * a.sketch_dim + j] = sum;
    }
  }
  if (a.out == nullptr) return;
  // LayerNorm of each row: means, then squares of deviations, each summed for all rows at once.
  float mean[kRows], squares[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    mean[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kItems; ++i)
#pragma unroll
      for (int k = 0; k < kVec; ++k) mean[r] += v[r][i][k];
  }
  block_sums<kRows>(mean, stat_partials[0]);
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    mean[r] *= a.inv_dim;
    squares[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int col = (i * blockDim.x + threadIdx.x) * kVec;
      if (col >= a.dim) continue;
#pragma unroll
      for (int k = 0; k < kVec; ++k) squares[r] += (v[r][i][k] - mean[r]) * (v[r][i][k] - mean[r]);
    }
  }
  block_sums<kRows>(squares, stat_partials[1]);
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int col = (i * blockDim.x + threadIdx.x) * kVec;
    if (col >= a.dim) continue;
    float mul[kVec], add[kVec];
    detail::load_param<kVec>(a.mul == nullptr ? nullptr : a.mul + col, 1.0f, mul);
    detail::load_param<kVec>(a.add == nullptr ? nullptr : a.add + col, 0.0f, add);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (first + r >= rows) continue;
      const float rstd = rsqrtf(squares[r] * a.inv_dim + a.eps);
      float o[kVec];
#pragma unroll
      for (int k = 0; k < kVec; ++k) o[k] = __fmaf_rn((v[r][i][k] - mean[r]) * rstd, mul[k], add[k]);
      detail::store_bf16<kVec>(a.out + static_cast<int64_t>(first + r) * a.dim + col, o);
    }
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
  const bool selection_pass = g.rows_per_cta == 4 && g.sketch != nullptr && g.y == nullptr && g.h == nullptr;
  if (selection_pass && g.dim % kVectorElems == 0 && detail::aligned_16(g.src) && detail::aligned_16(g.proj) &&
      detail::aligned_16(g.mul) && detail::aligned_16(g.add) && detail::aligned_16(g.out)) {
    // Two 16-byte items a thread, as the one-row kernel: up to 2 x 8 x 256 = 4096 columns (more
    // threads would leave too few registers for 4 rows and their sketches).
    const int threads = 32 * detail::ceil_div(detail::ceil_div(g.dim / kVectorElems, 2), 32);
    if (threads <= 256) {
      const ResidualLayerNormArgs a{nullptr, g.src, g.idx, nullptr, nullptr, g.mul, g.add, g.proj, g.sketch, g.out,
                                    static_cast<int>(g.sketch_dim), static_cast<int>(g.dim),
                                    1.0f / static_cast<float>(g.dim), g.eps};
      const int rows = static_cast<int>(g.rows);
      sketch_layer_norm_rows<2, 4><<<detail::ceil_div(rows, 4), threads, 0, stream>>>(a, rows);
      ASTRAEA_CUDA_CHECK_LAUNCH();
      return;
    }
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
