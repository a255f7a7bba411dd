#include "kernels/cuda_check.h"
#include "kernels/detail/row_io.cuh"
#include "kernels/rms_norm_rope.cuh"

namespace astraea::kernels {

namespace {

using detail::block_sum;
using detail::kVectorElems;

struct RmsNormRopeArgs {
  const bf16* src;
  int64_t src_row_stride;
  const float* weight;
  const float* inv_freq;      // null: no rotation
  const int64_t* positions;  // null: row t is token t
  int grid_h;
  int grid_w;
  int pairs;    // rotary pairs per head, head_dim / 2
  int pairs_t;  // the first pairs_t rotate with the frame index,
  int pairs_h;  // the next pairs_h with the row, the rest with the column
  int head_dim;
  int dim;
  float inv_dim;
  float eps;
  bf16* out;
};

constexpr int max_threads(int vec) { return vec == kVectorElems ? 512 : 1024; }
constexpr float kInvPi = 0.318309886183790671538f;

/// (cos, sin) of every rotary pair for token t. The angles depend on the pair and the token only, so
/// one table per token serves all heads: head_dim / 2 sincosf per token instead of dim / 2.
__device__ void fill_rotation_table(const RmsNormRopeArgs& a, int t, float2* table) {
  const int token = a.positions != nullptr ? static_cast<int>(__ldg(a.positions + t)) : t;
  const float pos_f = static_cast<float>(token / (a.grid_h * a.grid_w));
  const float pos_h = static_cast<float>((token / a.grid_w) % a.grid_h);
  const float pos_w = static_cast<float>(token % a.grid_w);
  for (int j = threadIdx.x; j < a.pairs; j += blockDim.x) {
    const float pos = j < a.pairs_t ? pos_f : (j < a.pairs_t + a.pairs_h ? pos_h : pos_w);
    // Angles reach ~1e3 rad, where __sincosf is far off. sincosf would be accurate but keeps a stack
    // frame for its huge-argument path; sincospif reduces exactly (x - rint(2x) / 2) and needs none.
    // Rounding angle / pi costs ~2 ulp of the angle, about 1e-4 rad at 1e3 rad: far below bf16's 4e-3.
    float sin_a, cos_a;
    sincospif(pos * (__ldg(a.inv_freq + j) * kInvPi), &sin_a, &cos_a);
    table[j] = make_float2(cos_a, sin_a);
  }
}

/// Rotates the kVec / 2 pairs starting at rotary pair j0 (all in one head).
template <int kVec>
__device__ __forceinline__ void rotate(const float2* table, int j0, float (&v)[kVec]) {
#pragma unroll
  for (int p = 0; p < kVec / 2; ++p) {
    const float2 cs = table[j0 + p];
    const float v0 = v[2 * p], v1 = v[2 * p + 1];
    v[2 * p] = v0 * cs.x - v1 * cs.y;
    v[2 * p + 1] = v0 * cs.y + v1 * cs.x;
  }
}

/// One CTA per token, the row held in registers (layout as in residual_layer_norm_resident).
/// kVec divides head_dim, so a thread's kVec elements never straddle two heads.
template <int kVec, int kItems>
__global__ void __launch_bounds__(max_threads(kVec)) rms_norm_rope_resident(const RmsNormRopeArgs a) {
  extern __shared__ float2 rotation[];
  __shared__ float partials[32];
  const int t = blockIdx.x;
  const bf16* src = a.src + static_cast<int64_t>(t) * a.src_row_stride;
  float v[kItems][kVec];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int col = (i * blockDim.x + threadIdx.x) * kVec;
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[i][k] = 0.0f;
    if (col < a.dim) detail::load_bf16<kVec>(src + col, v[i]);
  }
  // While the row's loads are in flight.
  if (a.inv_freq != nullptr) fill_rotation_table(a, t, rotation);

  float squares = 0.0f;  // out-of-row slots hold 0
#pragma unroll
  for (int i = 0; i < kItems; ++i)
#pragma unroll
    for (int k = 0; k < kVec; ++k) squares += v[i][k] * v[i][k];
  // The barrier inside block_sum also publishes the rotation table.
  const float rstd = rsqrtf(block_sum(squares, partials) * a.inv_dim + a.eps);

  bf16* out = a.out + static_cast<int64_t>(t) * a.dim;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int col = (i * blockDim.x + threadIdx.x) * kVec;
    if (col >= a.dim) continue;
    float weight[kVec];
    detail::load_param<kVec>(a.weight + col, 1.0f, weight);
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[i][k] *= rstd * weight[k];
    if (a.inv_freq != nullptr) rotate<kVec>(rotation, (col % a.head_dim) / 2, v[i]);
    detail::store_bf16<kVec>(out + col, v[i]);
  }
}

/// Fallback for rows too long for registers: reads the row twice, one pair per access.
__global__ void __launch_bounds__(1024) rms_norm_rope_streaming(const RmsNormRopeArgs a) {
  extern __shared__ float2 rotation[];
  __shared__ float partials[32];
  const int t = blockIdx.x;
  if (a.inv_freq != nullptr) fill_rotation_table(a, t, rotation);
  const bf16* src = a.src + static_cast<int64_t>(t) * a.src_row_stride;
  float squares = 0.0f;
  for (int c = 2 * threadIdx.x; c < a.dim; c += 2 * blockDim.x) {
    float v[2];
    detail::load_bf16<2>(src + c, v);
    squares += v[0] * v[0] + v[1] * v[1];
  }
  const float rstd = rsqrtf(block_sum(squares, partials) * a.inv_dim + a.eps);
  bf16* out = a.out + static_cast<int64_t>(t) * a.dim;
  for (int c = 2 * threadIdx.x; c < a.dim; c += 2 * blockDim.x) {
    float v[2];
    detail::load_bf16<2>(src + c, v);
    v[0] *= rstd * __ldg(a.weight + c);
    v[1] *= rstd * __ldg(a.weight + c + 1);
    if (a.inv_freq != nullptr) rotate<2>(rotation, (c % a.head_dim) / 2, v);
    detail::store_bf16<2>(out + c, v);
  }
}

/// Launches the first kItems (smallest first) whose CTA fits max_threads(kVec); false if none does.
template <int kVec, int kItems, int... kMoreItems>
bool launch_resident(const RmsNormRopeArgs& a, int tokens, size_t smem_bytes, cudaStream_t stream) {
  const int threads = 32 * detail::ceil_div(detail::ceil_div(a.dim / kVec, kItems), 32);
  if (threads <= max_threads(kVec)) {
    rms_norm_rope_resident<kVec, kItems><<<tokens, threads, smem_bytes, stream>>>(a);
    ASTRAEA_CUDA_CHECK_LAUNCH();
    return true;
  }
  if constexpr (sizeof...(kMoreItems) > 0) {
    return launch_resident<kVec, kMoreItems...>(a, tokens, smem_bytes, stream);
  } else {
    return false;
  }
}

}  // namespace

void rms_norm_rope(const bf16* src, int64_t src_row_stride, const float* weight, const float* inv_freq,
                   const int64_t* positions, int64_t grid_f,
                   int64_t grid_h, int64_t grid_w, int64_t heads, int64_t head_dim, float eps, bf16* out,
                   int64_t tokens, Stream stream) {
  detail::validate_rms_norm_rope(src, src_row_stride, weight, inv_freq, positions, grid_f, grid_h, grid_w, heads, head_dim, eps,
                                 out, tokens);
  const int64_t dim = heads * head_dim;
  if (tokens == 0 || dim == 0) return;
  const int pairs = static_cast<int>(head_dim / 2);
  RmsNormRopeArgs a{};
  a.src = src;
  a.src_row_stride = src_row_stride;
  a.weight = weight;
  a.inv_freq = inv_freq;
  a.positions = inv_freq != nullptr ? positions : nullptr;
  // Validation bounds the grid by tokens < 2^31; without rotation the grid is unused.
  a.grid_h = inv_freq != nullptr ? static_cast<int>(grid_h) : 1;
  a.grid_w = inv_freq != nullptr ? static_cast<int>(grid_w) : 1;
  a.pairs = pairs;
  a.pairs_h = pairs / 3;
  a.pairs_t = pairs - 2 * a.pairs_h;
  a.head_dim = static_cast<int>(head_dim);
  a.dim = static_cast<int>(dim);
  a.inv_dim = 1.0f / static_cast<float>(dim);
  a.eps = eps;
  a.out = out;

  const int grid = static_cast<int>(tokens);
  const size_t smem_bytes = inv_freq != nullptr ? pairs * sizeof(float2) : 0;  // <= 32 KiB by validation
  using detail::aligned_16;
  const bool vectors = head_dim % kVectorElems == 0 && src_row_stride % kVectorElems == 0 && aligned_16(src) &&
                       aligned_16(weight) && aligned_16(out);
  // Two or more 16-byte items per thread, as in residual_layer_norm (2.60 -> 2.77 TB/s for 12 x 128 on
  // an H100). Up to 8 x 8 x 512 = 32768 columns on the vector path and 2 x 8 x 1024 on the pairwise one.
  const bool launched = vectors ? launch_resident<kVectorElems, 2, 4, 8>(a, grid, smem_bytes, stream)
                                : launch_resident<2, 1, 4, 8>(a, grid, smem_bytes, stream);
  if (!launched) {
    rms_norm_rope_streaming<<<grid, 1024, smem_bytes, stream>>>(a);
    ASTRAEA_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace astraea::kernels
