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
  const bf16* y;
  const float* gate;
  const int64_t* idx;
  const float* lse_sel;
  const float* sketch_new;
  bf16* cache_out;
  float* cache_lse;
  float* cache_sketch;
  float* stale;
  int n;
  int k;
  int heads;
  int sketch_dim;
  int dim;
};

/// stale[i] += 1 for i in [begin, end), spread over the CTA's threads.
__device__ __forceinline__ void age(float* stale, int64_t begin, int64_t end) {
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) stale[i] += 1.0f;
}

/// One CTA per selected row r: writes bf16(h[r] + y[r] * gate) into the cache row idx[r], and its lse,
/// sketch and staleness; it also ages the unselected tokens between idx[r - 1] and idx[r] (the last CTA
/// those after idx[k - 1]), so every token is touched by exactly one CTA. With k = 0, one CTA ages all.
/// Thread t handles columns [(j * blockDim + t) * kVec, +kVec): contiguous warp accesses.
template <int kVec>
__global__ void __launch_bounds__(kMaxThreads) scatter_token_rows(const ScatterTokensArgs a) {
  if (a.k == 0) {
    age(a.stale, 0, a.n);
    return;
  }
  const int r = blockIdx.x;
  const int64_t i = __ldg(a.idx + r);
  age(a.stale, r == 0 ? 0 : __ldg(a.idx + r - 1) + 1, i);
  if (r == a.k - 1) age(a.stale, i + 1, a.n);

  const float* h = a.h + static_cast<int64_t>(r) * a.dim;
  const bf16* y = a.y != nullptr ? a.y + static_cast<int64_t>(r) * a.dim : nullptr;
  bf16* cache = a.cache_out + i * a.dim;
  for (int col = threadIdx.x * kVec; col < a.dim; col += blockDim.x * kVec) {
    float v[kVec];
    detail::load_f32<kVec>(h + col, v);
    if (y != nullptr) {
      float yv[kVec], gate[kVec];
      detail::load_bf16<kVec>(y + col, yv);
      detail::load_param<kVec>(a.gate == nullptr ? nullptr : a.gate + col, 1.0f, gate);
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[j] = __fmaf_rn(yv[j], gate[j], v[j]);  // as the CPU's std::fma
    }
    detail::store_bf16<kVec>(cache + col, v);
  }
  for (int c = threadIdx.x; c < a.sketch_dim; c += blockDim.x) {
    const int64_t at = i * a.sketch_dim + c;
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

void scatter_tokens(const float* h, const bf16* y, const float* gate, const int64_t* idx, int64_t k,
                    const float* lse_sel, int64_t heads, const float* sketch_new, int64_t sketch_dim,
                    bf16* cache_out, float* cache_lse, float* cache_sketch, float* stale, int64_t n, int64_t dim,
                    Stream stream) {
  detail::validate_scatter_tokens(h, idx, k, lse_sel, heads, sketch_new, sketch_dim, cache_out, cache_lse,
                                  cache_sketch, stale, n, dim);
  if (n == 0) return;
  ScatterTokensArgs a{};
  a.h = h;
  a.y = y;
  a.gate = gate;
  a.idx = idx;
  a.lse_sel = lse_sel;
  a.sketch_new = sketch_new;
  a.cache_out = cache_out;
  a.cache_lse = cache_lse;
  a.cache_sketch = cache_sketch;
  a.stale = stale;
  a.n = static_cast<int>(n);
  a.k = static_cast<int>(k);
  a.heads = k > 0 ? static_cast<int>(heads) : 1;  // unused without selected rows
  a.sketch_dim = static_cast<int>(sketch_dim);
  a.dim = static_cast<int>(dim);
  using detail::aligned_16;
  const bool vectors = dim % kVectorElems == 0 && aligned_16(h) && aligned_16(y) && aligned_16(gate) &&
                       aligned_16(cache_out);
  const int vec = vectors ? kVectorElems : 1;
  // At least one warp: a row of dim 0 still updates lse, sketch and staleness.
  const int threads = detail::row_threads(dim, vec, kMaxThreads);
  const int grid = static_cast<int>(std::max<int64_t>(k, 1));
  if (vectors) {
    scatter_token_rows<kVectorElems><<<grid, threads, 0, stream>>>(a);
  } else {
    scatter_token_rows<1><<<grid, threads, 0, stream>>>(a);
  }
  ASTRAEA_CUDA_CHECK_LAUNCH();
}

}  // namespace astraea::kernels
