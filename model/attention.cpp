#include "model/attention.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "kernels/attention_merge.cuh"
#include "model/block_ops.h"
#include "model/torch_compat.h"

namespace astraea {
namespace {

std::atomic<AttentionBackend> g_gpu_default{AttentionBackend::kCudnn};
std::atomic<int> g_key_splits{0};  // 0: choose_key_splits per call
constexpr int64_t kMinKeysPerSplit = 2048;

/// Whether `splits` parts divide the keys into equal shares of at least kMinKeysPerSplit.
bool splits_fit(int64_t keys, int64_t splits) {
  return keys % splits == 0 && keys / splits >= kMinKeysPerSplit;
}

// The math path on [B, N, H, hd], in float32, in query chunks so that the score matrix stays
// under ~64 MB. Differentiable, so it also serves CPU training.
AttentionResult math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool want_lse) {
  const int64_t b = q.size(0), nq = q.size(1), heads = q.size(2), hd = q.size(3), nk = k.size(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const auto qh = q.to(at::kFloat).permute({0, 2, 1, 3});  // [B, H, Nq, hd]
  const auto kt = k.to(at::kFloat).permute({0, 2, 3, 1});  // [B, H, hd, Nk]
  const auto vh = v.to(at::kFloat).permute({0, 2, 1, 3});  // [B, H, Nk, hd]
  const int64_t chunk = std::max<int64_t>(1, (int64_t{16} << 20) / std::max<int64_t>(1, b * heads * nk));
  // Without autograd the score matrix is scaled and turned into probabilities in place.
  const bool grad = records_grad({&q, &k, &v});
  std::vector<at::Tensor> outs, lses;
  for (int64_t s = 0; s < nq; s += chunk) {
    const int64_t n = std::min(chunk, nq - s);
    auto scores = at::matmul(qh.narrow(2, s, n), kt);  // [B, H, n, Nk]
    scores = grad ? scores * scale : scores.mul_(scale);
    auto l = at::logsumexp(scores, -1, true);
    outs.push_back(at::matmul(grad ? at::exp(scores - l) : scores.sub_(l).exp_(), vh));
    lses.push_back(l.squeeze(-1));
  }
  AttentionResult r;
  r.out = at::cat(outs, 2).permute({0, 2, 1, 3}).reshape({b, nq, heads * hd}).to(q.scalar_type());
  if (want_lse) r.lse = at::cat(lses, 2);
  return r;
}

/// [B, N, H, hd] -> [B, H, N, hd], the layout the fused kernels take. A tensor whose tokens each
/// hold their heads densely is passed as a view whatever its token and batch strides, 0 included
/// (cuDNN, like the packed qkv layouts, takes any 16-byte aligned stride): v arrives as a column
/// slice of the fused k|v or qkv projection, and copying it took 1.4% of a step at budget 0.5 (the
/// CUPTI trace in docs/traces). Anything else is copied.
at::Tensor as_bhnd(const at::Tensor& t) {
  const bool heads_dense = t.stride(3) == 1 && t.stride(2) == t.size(3);
  const bool aligned =
      t.stride(1) % 8 == 0 && t.stride(0) % 8 == 0 && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  return (heads_dense && aligned ? t : t.contiguous()).transpose(1, 2);
}

#if ASTRAEA_HAS_TORCH_CUDA
/// cuDNN attention with the keys split into `splits` parts of one launch, merged on the GPU.
AttentionResult split_key_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    int64_t splits, double scale, bool want_lse) {
  const int64_t b = q.size(0), nq = q.size(1), heads = q.size(2), hd = q.size(3), nk = k.size(1);
  // Batch item i * splits + s: the queries of item i against share s of its keys. With one item the
  // queries are a view with batch stride 0; with more, reshape copies them once a part.
  const auto qs = q.unsqueeze(1).expand({b, splits, nq, heads, hd}).reshape({b * splits, nq, heads, hd});
  const auto ks = k.reshape({b * splits, nk / splits, heads, hd});
  const auto vs = v.reshape({b * splits, nk / splits, heads, hd});
  auto [out, lse] =
      compat::fused_attention(compat::FusedAttention::kCudnn, as_bhnd(qs), as_bhnd(ks), as_bhnd(vs), scale);
  // [b, splits, nq, heads * hd] for the merge. Free where cuDNN wrote in the queries' layout (copied
  // queries); for stride-0 queries the output's layout is cuDNN's choice, and this may copy it.
  const auto parts = out.transpose(1, 2).contiguous();
  const auto part_lse = lse.to(at::kFloat).contiguous();
  AttentionResult r;
  r.out = at::empty({b, nq, heads * hd}, q.options());
  if (want_lse) r.lse = at::empty({b, heads, nq}, part_lse.options());
  kernels::merge_attention_splits(reinterpret_cast<const kernels::bf16*>(parts.data_ptr()),
                                  part_lse.data_ptr<float>(), b, splits, nq, heads, hd,
                                  reinterpret_cast<kernels::bf16*>(r.out.data_ptr()),
                                  want_lse ? r.lse.data_ptr<float>() : nullptr,
                                  static_cast<kernels::Stream>(compat::current_stream(q.device())));
  return r;
}
#endif

AttentionResult fused_attention(AttentionBackend backend, const at::Tensor& q, const at::Tensor& k,
                                const at::Tensor& v, bool want_lse) {
  const int64_t b = q.size(0), nq = q.size(1), heads = q.size(2), hd = q.size(3), nk = k.size(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  AttentionResult r;
  if (records_grad({&q, &k, &v})) {
    TORCH_CHECK(!want_lse, "attention: the log-sum-exp is not available while training");
    r.out = compat::differentiable_attention(as_bhnd(q), as_bhnd(k), as_bhnd(v), scale)
                .transpose(1, 2)
                .reshape({b, nq, heads * hd});
    return r;
  }
#if ASTRAEA_HAS_TORCH_CUDA
  if (backend == AttentionBackend::kCudnn && q.scalar_type() == at::kBFloat16) {
    const int forced = g_key_splits.load();
    const int64_t splits =
        forced == 0 ? choose_key_splits(b * heads, nq, nk, compat::multiprocessor_count(q.device()))
        : splits_fit(nk, forced) ? forced
                                 : 1;
    if (splits > 1) return split_key_attention(q, k, v, splits, scale, want_lse);
  }
#endif
  compat::FusedAttention kind = compat::FusedAttention::kCudnn;
  if (backend == AttentionBackend::kFlash) kind = compat::FusedAttention::kFlash;
  if (backend == AttentionBackend::kEfficient) kind = compat::FusedAttention::kEfficient;
  auto [out, lse] = compat::fused_attention(kind, as_bhnd(q), as_bhnd(k), as_bhnd(v), scale);
  r.out = out.transpose(1, 2).reshape({b, nq, heads * hd});
  if (want_lse) r.lse = lse.reshape({b, heads, nq}).to(at::kFloat);
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
    case AttentionBackend::kAuto:
      return "auto";
    case AttentionBackend::kMath:
      return "math";
    case AttentionBackend::kFlash:
      return "flash";
    case AttentionBackend::kCudnn:
      return "cudnn";
    case AttentionBackend::kEfficient:
      return "efficient";
  }
  return "?";
}

void set_default_gpu_attention(AttentionBackend backend) {
  if (backend != AttentionBackend::kAuto) g_gpu_default = backend;
}

// The cuDNN kernel's tiles are inferred, not documented: in the step profile (docs/perf.md) attention
// at budgets 0.4, 0.5, 0.7 and 0.3 cost 10/24, 12/24, 17/24 and 7/24 of dense, which is the waves of
// 128-query tiles on 132 multiprocessors. Wan2.1-1.3B at 480p, 12 heads: budget 0.4 (13104 queries,
// 9.4 waves rounded up to 10) takes 2 parts (9.5 waves); dense and budgets 0.7, 0.5 and 0.3 take 1.
// The 4% bar covers the parts' copies of the queries and the merge (measured: 2 parts at 0.4 make
// the forward 1.4 to 2.1% faster).
int choose_key_splits(int64_t batch_heads, int64_t queries, int64_t keys, int64_t multiprocessors) {
  constexpr int64_t kQueryTile = 128, kMaxSplits = 4;
  constexpr double kMinSaving = 0.04;
  if (batch_heads < 1 || queries < 1 || multiprocessors < 1) return 1;
  const int64_t tiles = batch_heads * ((queries + kQueryTile - 1) / kQueryTile);
  const auto waves = [&](int64_t s) {
    return static_cast<double>((tiles * s + multiprocessors - 1) / multiprocessors) / static_cast<double>(s);
  };
  int64_t best = 1;
  for (int64_t s = 2; s <= kMaxSplits; ++s) {
    if (splits_fit(keys, s) && waves(s) < waves(best)) best = s;
  }
  return waves(best) <= (1.0 - kMinSaving) * waves(1) ? static_cast<int>(best) : 1;
}

void set_attention_key_splits(int splits) {
  TORCH_CHECK(splits >= 0, "attention key splits must be 0 (choose) or positive, got ", splits);
  g_key_splits = splits;
}

AttentionResult attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool want_lse,
                          AttentionBackend backend) {
  TORCH_CHECK(q.dim() == k.dim() && k.dim() == v.dim() && (q.dim() == 3 || q.dim() == 4),
              "attention: q, k, v must all be [N, H, hd] or all [B, N, H, hd]");
  const bool batched = q.dim() == 4;
  const auto q4 = batched ? q : q.unsqueeze(0), k4 = batched ? k : k.unsqueeze(0),
             v4 = batched ? v : v.unsqueeze(0);
  TORCH_CHECK(q4.size(0) == k4.size(0) && q4.size(2) == k4.size(2) && q4.size(3) == k4.size(3) &&
                  k4.sizes() == v4.sizes(),
              "attention: q ", q.sizes(), ", k ", k.sizes(), " and v ", v.sizes(), " do not match");
  if (backend == AttentionBackend::kAuto) {
    // The fused kernels need half precision; float32 on the GPU takes the efficient kernel.
    backend = !q.is_cuda()                    ? AttentionBackend::kMath
              : q.scalar_type() == at::kFloat ? AttentionBackend::kEfficient
                                              : g_gpu_default.load();
  }
  AttentionResult r;
  if (backend == AttentionBackend::kMath) {
    r = math_attention(q4, k4, v4, want_lse);
  } else {
    TORCH_CHECK(q.is_cuda(), "attention backend '", attention_backend_name(backend),
                "' runs on CUDA tensors only");
    r = fused_attention(backend, q4, k4, v4, want_lse);
  }
  if (!batched) {
    r.out = r.out.squeeze(0);
    if (r.lse.defined()) r.lse = r.lse.squeeze(0);
  }
  return r;
}

}  // namespace astraea
