#include "core/block_ops.h"

#include <atomic>

#include "core/torch_compat.h"
#include "kernels/residual_layer_norm.cuh"
#include "kernels/rms_norm_rope.cuh"

namespace astraea {
namespace {

std::atomic<bool> g_fused_disabled{false};

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<T*>(t.data_ptr()) : nullptr;
}

// Rotates pairs (2j, 2j+1) of each head by pos_j * inv_freq[j] (Wan 2.1's rope_apply), in float.
at::Tensor apply_rope(const at::Tensor& v, const RopeGrid& g, int64_t heads) {
  const int64_t n = v.size(0), c = g.inv_freq.size(0);
  const int64_t ct = c - 2 * (c / 3), ch = c / 3;
  auto opts = v.options().dtype(at::kLong);
  auto t = at::arange(n, opts);
  auto f = t.div(g.height * g.width, "floor"), h = t.div(g.width, "floor").remainder(g.height),
       w = t.remainder(g.width);
  // pos[n, j]: the frame index for the first ct pairs, then the row, then the column.
  auto pos = at::cat({f.unsqueeze(1).expand({n, ct}), h.unsqueeze(1).expand({n, ch}),
                      w.unsqueeze(1).expand({n, c - ct - ch})}, 1).to(at::kFloat);
  auto angle = (pos * g.inv_freq.to(v.device()).unsqueeze(0)).unsqueeze(1);  // [N, 1, c]
  auto cos = angle.cos(), sin = angle.sin();
  auto pairs = v.view({n, heads, c, 2});
  auto x0 = pairs.select(3, 0), x1 = pairs.select(3, 1);
  return at::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, 3).view({n, heads * c * 2});
}

}  // namespace

void set_fused_kernels_disabled(bool disabled) { g_fused_disabled = disabled; }

bool uses_fused_kernels(const at::Tensor& t) {
#if ASTRAEA_HAS_TORCH_CUDA
  return !g_fused_disabled && t.is_cuda();
#else
  (void)t;
  return false;
#endif
}

at::Tensor residual_layer_norm(at::Tensor& x, const at::Tensor& y, const at::Tensor& gate,
                               const at::Tensor& mul, const at::Tensor& add,
                               at::ScalarType out_dtype, double eps, bool want_out) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 2 && x.is_contiguous(),
              "residual_layer_norm: x must be contiguous float32 [N, D]");
  const int64_t rows = x.size(0), dim = x.size(1);
#if ASTRAEA_HAS_TORCH_CUDA
  if (uses_fused_kernels(x) && out_dtype == at::kBFloat16 &&
      (!y.defined() || y.scalar_type() == at::kBFloat16)) {
    auto yc = y.defined() ? y.contiguous() : y;
    auto f32 = [](const at::Tensor& t) { return t.defined() ? t.to(at::kFloat).contiguous() : t; };
    auto g = f32(gate), m = f32(mul), a = f32(add);
    at::Tensor out = want_out ? at::empty({rows, dim}, x.options().dtype(at::kBFloat16)) : at::Tensor();
    kernels::residual_layer_norm(x.data_ptr<float>(), ptr_or_null<const kernels::bf16>(yc),
                                 ptr_or_null<const float>(g), ptr_or_null<const float>(m),
                                 ptr_or_null<const float>(a), ptr_or_null<kernels::bf16>(out), rows,
                                 dim, static_cast<float>(eps),
                                 static_cast<kernels::Stream>(compat::current_stream(x.device())));
    return out;
  }
#endif
  if (y.defined()) {
    if (gate.defined()) {
      x.add_(y.to(at::kFloat) * gate);
    } else {
      x.add_(y.to(at::kFloat));
    }
  }
  if (!want_out) return {};
  auto out = at::layer_norm(x, {dim}, {}, {}, eps);
  if (mul.defined()) out.mul_(mul);
  if (add.defined()) out.add_(add);
  return out.to(out_dtype);
}

at::Tensor rms_norm_rope(const at::Tensor& src, const at::Tensor& weight, const RopeGrid* rope,
                         int64_t heads, double eps) {
  TORCH_CHECK(src.dim() == 2 && src.stride(1) == 1, "rms_norm_rope: src must be [N, D] with unit column stride");
  const int64_t n = src.size(0), dim = src.size(1);
#if ASTRAEA_HAS_TORCH_CUDA
  if (uses_fused_kernels(src) && src.scalar_type() == at::kBFloat16) {
    auto out = at::empty({n, dim}, src.options());
    auto w = weight.to(at::kFloat).contiguous();
    kernels::rms_norm_rope(reinterpret_cast<const kernels::bf16*>(src.data_ptr()), src.stride(0),
                           w.data_ptr<float>(), rope ? rope->inv_freq.data_ptr<float>() : nullptr,
                           rope ? rope->frames : 0, rope ? rope->height : 0, rope ? rope->width : 0,
                           heads, dim / heads, static_cast<float>(eps), reinterpret_cast<kernels::bf16*>(out.data_ptr()), n,
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
