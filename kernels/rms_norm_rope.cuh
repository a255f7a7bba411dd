// RMSNorm over q or k followed by Wan 2.1's 3D rotary embedding (rope_apply), fused.
#pragma once

#include <cstdint>

#include "kernels/types.h"

namespace astraea::kernels {

/// For token t in [0, tokens): reads dim = heads * head_dim bf16 values at src + t * src_row_stride,
/// v = x * rsqrt(mean(x^2) + eps) * weight[c] (weight: float32 [dim]); then, if inv_freq is not null,
/// rotates pair j = (2j, 2j+1) of every head by pos_j * inv_freq[j] (inv_freq: float32 [head_dim / 2]),
/// pos_j being the token's frame, row or column index on the grid_f x grid_h x grid_w grid (first
/// c - 2 * (c / 3) pairs, then c / 3, then c / 3; c = head_dim / 2). Row t is grid token t, and tokens
/// must equal the grid's size, unless `positions` (device int64 [tokens], null: none) names each row's
/// grid token: rows gathered by the token-wise engine. Writes bf16 to out + t * dim, rounding once. Runs on `stream`. Throws std::invalid_argument.
/// Defined only when the kernels are built with CUDA (astraea/config.h: ASTRAEA_HAS_CUDA_KERNELS).
void rms_norm_rope(const bf16* src, int64_t src_row_stride, const float* weight, const float* inv_freq,
                   const int64_t* positions, int64_t grid_f,
                   int64_t grid_h, int64_t grid_w, int64_t heads, int64_t head_dim, float eps, bf16* out,
                   int64_t tokens, Stream stream);

/// CPU reference of rms_norm_rope (in double); ignores `stream`.
void rms_norm_rope_cpu(const bf16* src, int64_t src_row_stride, const float* weight, const float* inv_freq,
                       const int64_t* positions, int64_t grid_f, int64_t grid_h, int64_t grid_w, int64_t heads, int64_t head_dim, float eps,
                       bf16* out, int64_t tokens, Stream stream);

/// Fills inv_freq_out[head_dim / 2] as Wan 2.1's rope_params does: the k-th pair of an axis with
/// c_a pairs gets theta^(-k / c_a). Throws std::invalid_argument unless head_dim is even and positive.
void wan_rope_inv_freq(int64_t head_dim, double theta, float* inv_freq_out);

namespace detail {
/// Shared by both implementations so they reject the same arguments with the same message.
void validate_rms_norm_rope(const bf16* src, int64_t src_row_stride, const float* weight, const float* inv_freq,
                            const int64_t* positions, int64_t grid_f, int64_t grid_h, int64_t grid_w, int64_t heads, int64_t head_dim, float eps,
                            const bf16* out, int64_t tokens);
}  // namespace detail

}  // namespace astraea::kernels
