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

/// The token-wise engine's form, reading bf16 rows of a block input (a token cache) instead of a float
/// residual. For r < rows, with s the float row
///   s[:] = float(src[i, :]) + y[r, :] * gate[:]   (i = idx[r], or r when idx is null; y null: no add;
///                                                  gate null: 1)
///   h[r, :] = s[:]                                 (h null: not stored)
///   sketch[r * sketch_dim + j] = sum_c s[c] * proj[j * dim + c]   for j < sketch_dim (sketch null: none;
///                                                  proj is bf16: half the bytes re-read for every row)
///   out[r, :] = bf16(LN(s) * mul[:] + add[:])     (out null: none; mul null: 1; add null: 0)
/// One read of each source row does all of it: the engine's selection pass (sketch and the LayerNorm of
/// every token) and its gathers (the selected rows' residual stream, updated and normalised).
struct GatherLayerNormArgs {
  const bf16* src = nullptr;      ///< [*, dim]
  const int64_t* idx = nullptr;   ///< [rows], each a row of src; null: row r
  const bf16* y = nullptr;        ///< [rows, dim]
  const float* gate = nullptr;    ///< [dim]
  const bf16* proj = nullptr;     ///< [sketch_dim, dim]
  int64_t sketch_dim = 0;         ///< at most kMaxSketchDim
  float* sketch = nullptr;        ///< [rows, sketch_dim]
  const float* mul = nullptr;     ///< [dim]
  const float* add = nullptr;     ///< [dim]
  float* h = nullptr;             ///< [rows, dim]
  bf16* out = nullptr;            ///< [rows, dim]
  int64_t rows = 0, dim = 0;
  float eps = 1e-6f;
};
inline constexpr int64_t kMaxSketchDim = 16;

/// Runs on `stream`. Throws std::invalid_argument. Defined only with CUDA kernels, as above.
void gather_residual_layer_norm(const GatherLayerNormArgs& args, Stream stream);

/// CPU reference of gather_residual_layer_norm (statistics and sketch in double); ignores `stream`, and
/// also throws std::invalid_argument for an idx entry below 0 (the kernel takes idx on trust).
void gather_residual_layer_norm_cpu(const GatherLayerNormArgs& args, Stream stream);

namespace detail {
void validate_gather_residual_layer_norm(const GatherLayerNormArgs& args);

/// Shared by both implementations so they reject the same arguments with the same message.
void validate_residual_layer_norm(const float* x, const bf16* y, const bf16* out, int64_t rows, int64_t dim, float eps);
}  // namespace detail

}  // namespace astraea::kernels
