#include "model/block_ops.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <atomic>

#include "kernels/residual_layer_norm.cuh"
#include "kernels/rms_norm_rope.cuh"
#include "model/torch_compat.h"

namespace astraea {
namespace {

std::atomic<bool> g_fused_disabled{false};

// Rotates pairs (2j, 2j+1) of each head by pos_j * inv_freq[j] (Wan 2.1's rope_apply), in float.
at::Tensor apply_rope(const at::Tensor& v, const RopeGrid& g, int64_t heads) {
  const int64_t n = v.size(-2), c = g.inv_freq.size(0);
  const int64_t ct = c - 2 * (c / 3), ch = c / 3;
  auto t = g.positions.defined() ? g.positions.to(v.device()) : at::arange(n, v.options().dtype(at::kLong));
  auto f = t.div(g.height * g.width, "floor"), h = t.div(g.width, "floor").remainder(g.height),
       w = t.remainder(g.width);
  // pos[n, j]: the frame index for the first ct pairs, then the row, then the column.
  auto pos = at::cat({f.unsqueeze(1).expand({n, ct}), h.unsqueeze(1).expand({n, ch}),
                      w.unsqueeze(1).expand({n, c - ct - ch})},
                     1)
                 .to(at::kFloat);
  auto angle = (pos * g.inv_freq.unsqueeze(0)).unsqueeze(1);  // [N, 1, c]
  auto cos = angle.cos(), sin = angle.sin();
  auto shape = v.sizes().vec();
  auto pairs = v.reshape({-1, n, heads, c, 2});
  auto x0 = pairs.select(4, 0), x1 = pairs.select(4, 1);
  return at::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, 4).reshape(shape);
}

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<T*>(t.data_ptr()) : nullptr;
}

bool one_vector(const at::Tensor& t, int64_t dim) { return !t.defined() || t.numel() == dim; }

}  // namespace

at::Tensor as_vector(const at::Tensor& t) {
  return t.defined() ? t.reshape({-1}).to(at::kFloat).contiguous() : t;
}

void set_fused_kernels_disabled(bool disabled) { g_fused_disabled = disabled; }

bool records_grad(std::initializer_list<const at::Tensor*> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const auto* t : tensors) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

bool uses_fused_kernels(const at::Tensor& t) {
#if ASTRAEA_HAS_TORCH_CUDA
  return !g_fused_disabled && t.is_cuda() && !t.requires_grad() &&
         (t.dim() == 2 || (t.dim() == 3 && t.size(0) == 1));
#else
  (void)t;
  return false;
#endif
}

at::Tensor residual_layer_norm(at::Tensor& x, const at::Tensor& y, const at::Tensor& gate,
                               const at::Tensor& mul, const at::Tensor& add, at::ScalarType out_dtype,
                               double eps, bool want_out) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_contiguous(),
              "residual_layer_norm: x must be contiguous float32");
  const int64_t dim = x.size(-1), rows = x.numel() / dim;
  const bool grad = records_grad({&x, &y, &gate, &mul, &add});
#if ASTRAEA_HAS_TORCH_CUDA
  if (!grad && uses_fused_kernels(x) && out_dtype == at::kBFloat16 &&
      (!y.defined() || y.scalar_type() == at::kBFloat16) && one_vector(gate, dim) && one_vector(mul, dim) &&
      one_vector(add, dim)) {
    auto yc = y.defined() ? y.contiguous() : y;
    auto g = as_vector(gate), m = as_vector(mul), a = as_vector(add);
    at::Tensor out = want_out ? at::empty(x.sizes(), x.options().dtype(at::kBFloat16)) : at::Tensor();
    kernels::residual_layer_norm(
        x.data_ptr<float>(), ptr_or_null<const kernels::bf16>(yc), ptr_or_null<const float>(g),
        ptr_or_null<const float>(m), ptr_or_null<const float>(a), ptr_or_null<kernels::bf16>(out), rows, dim,
        static_cast<float>(eps), static_cast<kernels::Stream>(compat::current_stream(x.device())));
    return out;
  }
#endif
  if (y.defined()) {
    auto update = gate.defined() ? y.to(at::kFloat) * gate : y.to(at::kFloat);
    if (grad) {
      x = x + update;  // autograd saved the old x for LayerNorm's backward: no in-place update
    } else {
      x.add_(update);
    }
  }
  if (!want_out) return {};
  auto out = at::layer_norm(x, {dim}, {}, {}, eps);
  if (mul.defined()) out = out * mul;
  if (add.defined()) out = out + add;
  return out.to(out_dtype);
}

at::Tensor rms_norm_rope(const at::Tensor& src, const at::Tensor& weight, const RopeGrid* rope, int64_t heads,
                         double eps) {
  TORCH_CHECK(src.stride(-1) == 1, "rms_norm_rope: src rows must be contiguous");
  const int64_t dim = src.size(-1);
#if ASTRAEA_HAS_TORCH_CUDA
  if (!records_grad({&src, &weight}) && uses_fused_kernels(src) && src.scalar_type() == at::kBFloat16) {
    const auto rows = src.dim() == 3 ? src.select(0, 0) : src;  // [N, D], row stride kept
    const int64_t n = rows.size(0);
    auto out = at::empty(src.sizes(), src.options());
    auto w = weight.to(at::kFloat).contiguous();
    // Gathered rows (the token-wise engine) name their grid tokens.
    const auto positions =
        rope && rope->positions.defined() ? rope->positions.to(at::kLong).contiguous() : at::Tensor();
    kernels::rms_norm_rope(reinterpret_cast<const kernels::bf16*>(rows.data_ptr()), rows.stride(0),
                           w.data_ptr<float>(), rope ? rope->inv_freq.data_ptr<float>() : nullptr,
                           positions.defined() ? positions.data_ptr<int64_t>() : nullptr,
                           rope ? rope->frames : 0, rope ? rope->height : 0, rope ? rope->width : 0, heads,
                           dim / heads, static_cast<float>(eps),
                           reinterpret_cast<kernels::bf16*>(out.data_ptr()), n,
                           static_cast<kernels::Stream>(compat::current_stream(src.device())));
    return out;
  }
#endif
  auto v = src.to(at::kFloat);
  v = v * at::rsqrt(v.pow(2).mean(-1, true) + eps) * weight;
  if (rope) v = apply_rope(v, *rope, heads);
  return v.to(src.scalar_type());
}

}  // namespace astraea
