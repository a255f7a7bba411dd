// The token-wise engine's selection: score every token, keep the top k (WanDiT::sparse_block).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/types.h"

namespace astraea::kernels {

/// score[i] = w_lse * lse[i] * ||sketch_new[i, :] - sketch_old[i, :]||_2 + w_stale * exp(stale[i]), i < n
/// (sketch rows of sketch_dim floats, contiguous), then writes the indices of the k highest scores to
/// idx_out[0..k) in ASCENDING index order (ties at the threshold: lower indices first, so exactly k).
/// score_out (float [n]) receives the scores (the caller may log them). 1 <= k <= n. A NaN score ranks
/// below every other score (and -0 equals +0). `workspace`: select_tokens_workspace_bytes(n) bytes of
/// device memory, overwritten. Runs on `stream`; deterministic. Throws std::invalid_argument.
/// Defined only when the kernels are built with CUDA (astraea/config.h: ASTRAEA_HAS_CUDA_KERNELS).
void select_tokens(const float* lse, const float* sketch_new, const float* sketch_old, int64_t sketch_dim,
                   const float* stale, float w_lse, float w_stale, int64_t n, int64_t k, float* score_out,
                   int64_t* idx_out, void* workspace, size_t workspace_bytes, Stream stream);

/// Bytes of device workspace select_tokens needs for n tokens. Defined with select_tokens.
size_t select_tokens_workspace_bytes(int64_t n);

/// CPU reference of select_tokens: scores in double, rounded to float, then select_top_scores_cpu on
/// them. Throws std::invalid_argument also for a NaN score. Ignores `workspace` and `stream`.
void select_tokens_cpu(const float* lse, const float* sketch_new, const float* sketch_old, int64_t sketch_dim,
                       const float* stale, float w_lse, float w_stale, int64_t n, int64_t k, float* score_out,
                       int64_t* idx_out, void* workspace, size_t workspace_bytes, Stream stream);

/// The selection step alone, on the host: the indices of the k highest of score[0..n) in ascending
/// order, ties at the threshold going to lower indices. Throws std::invalid_argument on a NaN score.
/// The GPU test runs it on the kernel's own scores, so that the indices must match exactly.
void select_top_scores_cpu(const float* score, int64_t n, int64_t k, int64_t* idx_out);

namespace detail {
/// Shared by both implementations so they reject the same arguments with the same message.
void validate_select_tokens(const float* lse, const float* sketch_new, const float* sketch_old,
                            int64_t sketch_dim, const float* stale, float w_lse, float w_stale, int64_t n,
                            int64_t k, const float* score_out, const int64_t* idx_out);
}  // namespace detail

}  // namespace astraea::kernels
