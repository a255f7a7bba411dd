// The token-wise engine's write-back: a block's selected tokens into its cache, which is the next block's input.
#pragma once

#include <cstdint>

#include "kernels/types.h"

namespace astraea::kernels {

/// After a block computed the selected tokens idx[0..k) (ascending, unique, < n), its last residual
/// update fused with the write-back; the next block reads cache_out as its input:
///   cache_out[idx[r], :] = bf16(h[r, :] + y[r, :] * gate[:])   (y null: h alone; gate null: 1;
///                                                               one rounding of the multiply-add)
///   cache_lse[idx[r]] = mean over heads of lse_sel[head * k + r] (lse_sel: float [heads, k]);
///   cache_sketch[idx[r], :] = sketch_new[idx[r], :] (sketch_dim floats);
///   stale[i] = selected ? 0 : stale[i] + 1 for every i < n.
/// h: float [k, dim]; y: bf16 [k, dim]; gate: float [dim]; cache_out: bf16 [n, dim]; cache_lse, stale:
/// float [n]; sketch_new, cache_sketch: float [n, sketch_dim]; no two arrays overlap. Unselected rows of
/// cache_out are not touched. An idx that is not ascending and unique is the caller's error: the kernel
/// does not check it. 0 <= k <= n. Runs on `stream`. Throws std::invalid_argument.
/// Defined only when the kernels are built with CUDA (astraea/config.h: ASTRAEA_HAS_CUDA_KERNELS).
void scatter_tokens(const float* h, const bf16* y, const float* gate, const int64_t* idx, int64_t k,
                    const float* lse_sel, int64_t heads, const float* sketch_new, int64_t sketch_dim,
                    bf16* cache_out, float* cache_lse, float* cache_sketch, float* stale, int64_t n, int64_t dim,
                    Stream stream);

/// CPU reference of scatter_tokens (the lse mean in double); also throws std::invalid_argument when idx
/// is not ascending, unique and in [0, n). Ignores `stream`.
void scatter_tokens_cpu(const float* h, const bf16* y, const float* gate, const int64_t* idx, int64_t k,
                        const float* lse_sel, int64_t heads, const float* sketch_new, int64_t sketch_dim,
                        bf16* cache_out, float* cache_lse, float* cache_sketch, float* stale, int64_t n,
                        int64_t dim, Stream stream);

namespace detail {
/// Shared by both implementations so they reject the same arguments with the same message.
void validate_scatter_tokens(const float* h, const int64_t* idx, int64_t k, const float* lse_sel,
                             int64_t heads, const float* sketch_new, int64_t sketch_dim,
                             const bf16* cache_out, const float* cache_lse, const float* cache_sketch,
                             const float* stale, int64_t n, int64_t dim);
}  // namespace detail

}  // namespace astraea::kernels
