// The elementwise steps of a DiT block, on LibTorch tensors. On a CUDA device with bf16
// activations they run as the fused kernels of kernels/; elsewhere as ATen operations.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace astraea {

/// Where rotary positions come from: the token grid and Wan's per-pair inverse frequencies.
struct RopeGrid {
  int64_t frames = 0, height = 0, width = 0;
  at::Tensor inv_freq;  ///< [head_dim / 2] float32, on the model's device
};

/// x (float32 [N, D], updated in place) += y * gate; then returns LN(x) * mul + add in
/// `out_dtype`. Undefined y skips the add, undefined gate means 1, undefined mul/add mean 1/0;
/// with `want_out` false only the residual update runs and an undefined tensor is returned.
at::Tensor residual_layer_norm(at::Tensor& x, const at::Tensor& y, const at::Tensor& gate,
                               const at::Tensor& mul, const at::Tensor& add,
                               at::ScalarType out_dtype, double eps, bool want_out = true);

/// RMSNorm over the last dimension (float math, times `weight`), then, when `rope` is given,
/// Wan's 3D rotary embedding per head. src: [N, D], rows may be strided. Returns [N, D] in src's dtype.
at::Tensor rms_norm_rope(const at::Tensor& src, const at::Tensor& weight, const RopeGrid* rope,
                         int64_t heads, double eps);

/// Turns the fused kernels off (true: ATen everywhere), to compare the two paths.
void set_fused_kernels_disabled(bool disabled);
/// Whether these tensors take the fused kernels.
bool uses_fused_kernels(const at::Tensor& t);

}  // namespace astraea
