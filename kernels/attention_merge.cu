#include <cmath>

#include "kernels/attention_merge.cuh"
#include "kernels/cuda_check.h"
#include "kernels/detail/row_io.cuh"

namespace astraea::kernels {

namespace {

using detail::kVectorElems;

constexpr int kMaxThreads = 256;  // Wan's 12 x 128 columns take 192 threads of 8; wider rows loop

struct MergeArgs {
  const bf16* parts;
  const float* part_lse;
  bf16* out;
  float* lse;
  int splits;
  int rows;
  int heads;
  int head_dim;
};

/// One CTA per (query row, batch item). Thread t merges columns [(j * blockDim + t) * kVec, +kVec),
/// which lie in one head (kVec divides head_dim), weighing each split by exp(l_s - max_s l_s).
template <int kVec>
__global__ void __launch_bounds__(kMaxThreads) merge_rows(const MergeArgs a) {
  const int r = blockIdx.x, b = blockIdx.y;
  const int width = a.heads * a.head_dim;
  const int64_t split_stride = static_cast<int64_t>(a.rows) * width;
  const bf16* parts = a.parts + (static_cast<int64_t>(b) * a.splits * a.rows + r) * width;
  const float* part_lse = a.part_lse + static_cast<int64_t>(b) * a.splits * a.heads * a.rows + r;
  for (int col = threadIdx.x * kVec; col < width; col += blockDim.x * kVec) {
    const int h = col / a.head_dim;
    float m = -INFINITY;
    for (int s = 0; s < a.splits; ++s)
      m = fmaxf(m, __ldg(part_lse + (static_cast<int64_t>(s) * a.heads + h) * a.rows));
    float acc[kVec] = {}, total = 0.0f;
    for (int s = 0; s < a.splits; ++s) {
      const float l = __ldg(part_lse + (static_cast<int64_t>(s) * a.heads + h) * a.rows);
      const float w = m == -INFINITY ? 0.0f : __expf(l - m);
      total += w;
      float v[kVec];
      detail::load_bf16<kVec>(parts + s * split_stride + col, v);
#pragma unroll
      for (int j = 0; j < kVec; ++j) acc[j] = __fmaf_rn(w, v[j], acc[j]);
    }
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc[j] *= inv;
    detail::store_bf16<kVec>(a.out + (static_cast<int64_t>(b) * a.rows + r) * width + col, acc);
    if (a.lse != nullptr && col % a.head_dim == 0) {
      a.lse[(static_cast<int64_t>(b) * a.heads + h) * a.rows + r] = total > 0.0f ? m + __logf(total) : m;
    }
  }
}

}  // namespace

void merge_attention_splits(const bf16* parts, const float* part_lse, int64_t batch, int64_t splits,
                            int64_t rows, int64_t heads, int64_t head_dim, bf16* out, float* lse,
                            Stream stream) {
  detail::validate_merge_attention_splits(parts, part_lse, batch, splits, rows, heads, head_dim, out);
  if (batch == 0 || rows == 0) return;
  MergeArgs a{};
  a.parts = parts;
  a.part_lse = part_lse;
  a.out = out;
  a.lse = lse;
  a.splits = static_cast<int>(splits);
  a.rows = static_cast<int>(rows);
  a.heads = static_cast<int>(heads);
  a.head_dim = static_cast<int>(head_dim);
  using detail::aligned_16;
  const bool vectors = head_dim % kVectorElems == 0 && aligned_16(parts) && aligned_16(out);
  const int vec = vectors ? kVectorElems : 1;
  const int threads = detail::row_threads(heads * head_dim, vec, kMaxThreads);
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(batch));
  if (vectors) {
    merge_rows<kVectorElems><<<grid, threads, 0, stream>>>(a);
  } else {
    merge_rows<1><<<grid, threads, 0, stream>>>(a);
  }
  ASTRAEA_CUDA_CHECK_LAUNCH();
}

}  // namespace astraea::kernels
