#include "core/attention.h"

#include <atomic>
#include <cmath>
#include <stdexcept>

#include "core/torch_compat.h"

namespace astraea {
namespace {

std::atomic<AttentionBackend> g_gpu_default{AttentionBackend::kCudnn};

// The math path, in float32, in query chunks so that the score matrix stays under ~64 MB.
AttentionResult math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               bool want_lse) {
  const int64_t nq = q.size(0), heads = q.size(1), hd = q.size(2), nk = k.size(0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const auto qh = q.to(at::kFloat).permute({1, 0, 2});  // [H, Nq, hd]
  const auto kt = k.to(at::kFloat).permute({1, 2, 0});  // [H, hd, Nk]
  const auto vh = v.to(at::kFloat).permute({1, 0, 2});  // [H, Nk, hd]
  auto out = at::empty({heads, nq, hd}, qh.options());
  auto lse = at::empty({heads, nq}, qh.options());
  const int64_t chunk = std::max<int64_t>(1, (int64_t{16} << 20) / std::max<int64_t>(1, heads * nk));
  for (int64_t s = 0; s < nq; s += chunk) {
    const int64_t n = std::min(chunk, nq - s);
    auto scores = at::matmul(qh.narrow(1, s, n), kt).mul_(scale);  // [H, n, Nk]
    auto l = at::logsumexp(scores, -1, true);
    out.narrow(1, s, n).copy_(at::matmul(scores.sub_(l).exp_(), vh));
    lse.narrow(1, s, n).copy_(l.squeeze(-1));
  }
  AttentionResult r;
  r.out = out.permute({1, 0, 2}).reshape({nq, heads * hd}).to(q.scalar_type());
  if (want_lse) r.lse = lse;
  return r;
}

AttentionResult fused_attention(AttentionBackend backend, const at::Tensor& q, const at::Tensor& k,
                                const at::Tensor& v, bool want_lse) {
  const int64_t nq = q.size(0), heads = q.size(1), hd = q.size(2);
  compat::FusedAttention kind = compat::FusedAttention::kCudnn;
  if (backend == AttentionBackend::kFlash) kind = compat::FusedAttention::kFlash;
  if (backend == AttentionBackend::kEfficient) kind = compat::FusedAttention::kEfficient;
  // [N, H, hd] -> [1, H, N, hd] as a strided view of a contiguous tensor, the layout every fused
  // kernel accepts (v arrives as a column slice of the fused qkv GEMM output; copying it is ~1%).
  auto as_bhnd = [](const at::Tensor& t) { return t.contiguous().unsqueeze(0).transpose(1, 2); };
  auto [out, lse] = compat::fused_attention(kind, as_bhnd(q), as_bhnd(k), as_bhnd(v),
                                            1.0 / std::sqrt(static_cast<double>(hd)));
  AttentionResult r;
  r.out = out.transpose(1, 2).reshape({nq, heads * hd});
  if (want_lse) r.lse = lse.reshape({heads, nq}).to(at::kFloat);
  return r;
}

}  // namespace

AttentionBackend parse_attention_backend(const std::string& name) {
  for (auto b : {AttentionBackend::kAuto, AttentionBackend::kMath, AttentionBackend::kFlash,
                 AttentionBackend::kCudnn, AttentionBackend::kEfficient}) {
    if (name == attention_backend_name(b)) return b;
  }
  throw std::invalid_argument("unknown attention backend '" + name +
                              "' (known: auto, math, flash, cudnn, efficient)");
}

const char* attention_backend_name(AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::kAuto: return "auto";
    case AttentionBackend::kMath: return "math";
    case AttentionBackend::kFlash: return "flash";
    case AttentionBackend::kCudnn: return "cudnn";
    case AttentionBackend::kEfficient: return "efficient";
  }
  return "?";
}

void set_default_gpu_attention(AttentionBackend backend) {
  if (backend != AttentionBackend::kAuto) g_gpu_default = backend;
}

AttentionResult attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          bool want_lse, AttentionBackend backend) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "attention: q, k, v must be [N, H, hd]");
  TORCH_CHECK(q.size(1) == k.size(1) && q.size(2) == k.size(2) && k.sizes() == v.sizes(),
              "attention: q ", q.sizes(), ", k ", k.sizes(), " and v ", v.sizes(), " do not match");
  if (backend == AttentionBackend::kAuto) {
    // The fused kernels need half precision; float32 on the GPU takes the efficient kernel.
    backend = !q.is_cuda()                        ? AttentionBackend::kMath
              : q.scalar_type() == at::kFloat      ? AttentionBackend::kEfficient
                                                   : g_gpu_default.load();
  }
  if (backend == AttentionBackend::kMath) return math_attention(q, k, v, want_lse);
  TORCH_CHECK(q.is_cuda(), "attention backend '", attention_backend_name(backend),
              "' runs on CUDA tensors only");
  return fused_attention(backend, q, k, v, want_lse);
}

}  // namespace astraea
