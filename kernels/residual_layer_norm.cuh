// Residual update and adaLN-modulated LayerNorm, fused: the DiT block's "x = x + gate * y; norm(x)".
#pragma once

#include <cstdint>

#include "kernels/types.h"

namespace astraea::kernels {

/// x[r,:] += y[r,:] * gate[:]   (y null: no add; gate null: gate = 1); then, if out is not null,
/// out[r,c] = bf16((x[r,c] - mean_r) * rsqrt(var_r + eps) * mul[c] + add[c])   (mul null: 1; add null: 0),
/// with the biased variance of the updated row. x: float32 [rows, dim] row-major, updated in place;
/// y, out: bf16 [rows, dim]; gate, mul, add: float32 [dim]. Runs on `stream`. Throws std::invalid_argument.
/// Defined only when the kernels are built with CUDA (astraea/config.h: ASTRAEA_HAS_CUDA_KERNELS).
void residual_layer_norm(float* x, const bf16* y, const float* gate, const float* mul, const float* add, bf16* out,
                         int64_t rows, int64_t dim, float eps, Stream stream);

/// CPU reference of residual_layer_norm (statistics in double); ignores `stream`.
void residual_layer_norm_cpu(float* x, const bf16* y, const float* gate, const float* mul, const float* add, bf16* out,
                             int64_t rows, int64_t dim, float eps, Stream stream);

namespace detail {
/// Shared by both implementations so they reject the same arguments with the same message.
void validate_residual_layer_norm(const float* x, const bf16* y, const bf16* out, int64_t rows, int64_t dim, float eps);
}  // namespace detail

}  // namespace astraea::kernels
