// Attention over the keys in parts, put back together: the merge of split-key (flash-decoding style)
// attention, which lets one fused attention call cut each query tile's work into shorter pieces.
#pragma once

#include <cstdint>

#include "kernels/types.h"

namespace astraea::kernels {

/// Softmax attention computed separately over `splits` disjoint parts of the keys, merged into the
/// attention over all of them. For batch b, query row r, head h and split s, with partial output
/// o_s = parts[b][s][r][h * head_dim + :] and log-sum-exp l_s = part_lse[b][s][h][r]:
///   lse = log sum_s exp(l_s),  out[b][r][h * head_dim + :] = bf16(sum_s exp(l_s - lse) * o_s)
///   (lse[b][h][r] = lse when lse is not null).
/// parts: bf16 [batch, splits, rows, heads * head_dim]; part_lse: float [batch, splits, heads, rows];
/// out: bf16 [batch, rows, heads * head_dim]; lse: float [batch, heads, rows] or null. No two arrays
/// overlap. A part whose l_s is -inf (no keys) weighs nothing if its output is finite; all parts -inf
/// give out 0 and lse -inf.
/// Runs on `stream`. Throws std::invalid_argument. Defined only when the kernels are built with CUDA
/// (astraea/config.h: ASTRAEA_HAS_CUDA_KERNELS).
void merge_attention_splits(const bf16* parts, const float* part_lse, int64_t batch, int64_t splits,
                            int64_t rows, int64_t heads, int64_t head_dim, bf16* out, float* lse,
                            Stream stream);

/// CPU reference of merge_attention_splits (weights and sums in double). Ignores `stream`.
void merge_attention_splits_cpu(const bf16* parts, const float* part_lse, int64_t batch, int64_t splits,
                                int64_t rows, int64_t heads, int64_t head_dim, bf16* out, float* lse,
                                Stream stream);

namespace detail {
/// Shared by both implementations so they reject the same arguments with the same message.
void validate_merge_attention_splits(const bf16* parts, const float* part_lse, int64_t batch, int64_t splits,
                                     int64_t rows, int64_t heads, int64_t head_dim, const bf16* out);
}  // namespace detail

}  // namespace astraea::kernels
