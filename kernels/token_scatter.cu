#include <algorithm>

#include "kernels/cuda_check.h"
#include "kernels/detail/row_io.cuh"
#include "kernels/token_scatter.cuh"

namespace astraea::kernels {

namespace {

using detail::kVectorElems;

constexpr int kMaxThreads = 256;  // dim 1536 takes 192 threads of 8 columns; wider rows loop

struct ScatterTokensArgs {
  const float* h;
  const int64_t* idx;
  const float* lse_sel;
  const float* sketch_new;
  bf16* cache_out;
  float* cache_lse;
  float* cache_sketch;
  float* stale;
  float* x_next;
  int k;
  int heads;
  int sketch_dim;
  int dim;
};

/// r with idx[r] == token, or -1: a lower-bound search of the ascending idx. Every thread of the CTA
/// runs it on the same addresses (broadcast loads), so the branch on its result is uniform; its first
/// steps touch the same few entries in every CTA and stay in L1.
__device__ __forceinline__ int selected_row(const int64_t* idx, int k, int64_t token) {
  int lo = 0, hi = k;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (__ldg(idx + mid) < token) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < k && __ldg(idx + lo) == token ? lo : -1;
}

/// One CTA per token i: a selected row rounds h[r] to bf16 into the cache and widens it back into
/// x_next, and updates lse, sketch and staleness; any other row widens its cached value into x_next.
/// Thread t handles columns [(j * blockDim + t) * kVec, +kVec): contiguous warp accesses.
template <int kVec>
__global__ void __launch_bounds__(kMaxThreads) scatter_token_rows(const ScatterTokensArgs a) {
  const int i = blockIdx.x;
  const int r = selected_row(a.idx, a.k, i);
  bf16* cache = a.cache_out + static_cast<int64_t>(i) * a.dim;
  float* x = a.x_next + static_cast<int64_t>(i) * a.dim;
  if (r < 0) {
    for (int col = threadIdx.x * kVec; col < a.dim; col += blockDim.x * kVec) {
      float v[kVec];
      detail::load_bf16<kVec>(cache + col, v);
      detail::store_f32<kVec>(x + col, v);
    }
    if (threadIdx.x == 0) a.stale[i] += 1.0f;
    return;
  }
  const float* h = a.h + static_cast<int64_t>(r) * a.dim;
  for (int col = threadIdx.x * kVec; col < a.dim; col += blockDim.x * kVec) {
    float v[kVec];
    detail::load_f32<kVec>(h + col, v);
    // Round once here; storing the rounded values as bf16 again is exact.
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] = __bfloat162float(__float2bfloat16_rn(v[j]));
    detail::store_bf16<kVec>(cache + col, v);
    detail::store_f32<kVec>(x + col, v);
  }
  for (int c = threadIdx.x; c < a.sketch_dim; c += blockDim.x) {
    const int64_t at = static_cast<int64_t>(i) * a.sketch_dim + c;
    a.cache_sketch[at] = __ldg(a.sketch_new + at);
  }
  if (threadIdx.x < 32) {  // warp 0: the mean over heads, summed in the same order on every run
    float sum = 0.0f;
    for (int head = threadIdx.x; head < a.heads; head += 32) {
      sum += __ldg(a.lse_sel + static_cast<int64_t>(head) * a.k + r);
    }
    sum = detail::warp_sum(sum);
    if (threadIdx.x == 0) {
      a.cache_lse[i] = sum / static_cast<float>(a.heads);
      a.stale[i] = 0.0f;
    }
  }
}

}  // namespace

void scatter_tokens(const float* h, const int64_t* idx, int64_t k, const float* lse_sel, int64_t heads,
                    const float* sketch_new, int64_t sketch_dim, bf16* cache_out, float* cache_lse,
                    float* cache_sketch, float* stale, float* x_next, int64_t n, int64_t dim, Stream stream) {
  detail::validate_scatter_tokens(h, idx, k, lse_sel, heads, sketch_new, sketch_dim, cache_out, cache_lse,
                                  cache_sketch, stale, x_next, n, dim);
  if (n == 0) return;
  ScatterTokensArgs a{};
  a.h = h;
  a.idx = idx;
  a.lse_sel = lse_sel;
  a.sketch_new = sketch_new;
  a.cache_out = cache_out;
  a.cache_lse = cache_lse;
  a.cache_sketch = cache_sketch;
  a.stale = stale;
  a.x_next = x_next;
  a.k = static_cast<int>(k);
  a.heads = k > 0 ? static_cast<int>(heads) : 1;  // unused without selected rows
  a.sketch_dim = static_cast<int>(sketch_dim);
  a.dim = static_cast<int>(dim);
  using detail::aligned_16;
  const bool vectors =
      dim % kVectorElems == 0 && aligned_16(h) && aligned_16(cache_out) && aligned_16(x_next);
  const int vec = vectors ? kVectorElems : 1;
  // At least one warp: a row of dim 0 still updates lse, sketch and staleness.
  const int threads = std::clamp(32 * detail::ceil_div(detail::ceil_div(dim, vec), 32), 32, kMaxThreads);
  const int grid = static_cast<int>(n);
  if (vectors) {
    scatter_token_rows<kVectorElems><<<grid, threads, 0, stream>>>(a);
  } else {
    scatter_token_rows<1><<<grid, threads, 0, stream>>>(a);
  }
  ASTRAEA_CUDA_CHECK_LAUNCH();
}

}  // namespace astraea::kernels
