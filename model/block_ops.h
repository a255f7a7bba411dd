// The elementwise steps of a DiT block, on LibTorch tensors. For one sequence on a CUDA device with
// bf16 activations and no autograd they run as the fused kernels of kernels/; otherwise (CPU,
// batches, training) as ATen operations.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <initializer_list>

namespace astraea {

/// Where rotary positions come from: the token grid and Wan's per-pair inverse frequencies.
struct RopeGrid {
  int64_t frames = 0, height = 0, width = 0;
  at::Tensor inv_freq;  ///< [head_dim / 2] float32, on the model's device
  at::Tensor
      positions;  ///< [n] long: the token index of each row (gathered rows); undefined: row i is token i
};

/// x (float32 [..., N, D]) += y * gate; then returns LN(x) * mul + add in `out_dtype`. Undefined y
/// skips the add, undefined gate means 1, undefined mul/add mean 1/0; gate, mul and add are [D]
/// or broadcast per sequence ([B, 1, D]). Updates x in place, or rebinds it to a new tensor when
/// autograd records. With `want_out` false only the residual update runs.
at::Tensor residual_layer_norm(at::Tensor& x, const at::Tensor& y, const at::Tensor& gate,
                               const at::Tensor& mul, const at::Tensor& add, at::ScalarType out_dtype,
                               double eps, bool want_out = true);

/// RMSNorm over the last dimension (float math, times `weight`), then, when `rope` is given,
/// Wan's 3D rotary embedding per head. src: [..., N, D], rows may be strided. Returns src's dtype.
at::Tensor rms_norm_rope(const at::Tensor& src, const at::Tensor& weight, const RopeGrid* rope, int64_t heads,
                         double eps);

/// A per-channel vector for the kernels: contiguous float32 [D] from one that may be [1, 1, D] or
/// another dtype; undefined stays undefined.
at::Tensor as_vector(const at::Tensor& t);

/// Turns the fused kernels off (true: ATen everywhere), to compare the two paths.
void set_fused_kernels_disabled(bool disabled);
/// Whether `t` (one sequence, [N, D] or [1, N, D], not recorded by autograd) takes the fused kernels.
bool uses_fused_kernels(const at::Tensor& t);

/// Whether autograd records an operation on these tensors (grad mode on and one of them requires grad).
bool records_grad(std::initializer_list<const at::Tensor*> tensors);

}  // namespace astraea
