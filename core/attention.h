// One attention entry point with a CPU math backend and the GPU's fused kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace astraea {

/// Which implementation computes attention. kAuto: math on the CPU, the fastest fused kernel
/// measured on the GPU (see docs/perf.md).
enum class AttentionBackend { kAuto, kMath, kFlash, kCudnn, kEfficient };

/// Parses "auto|math|flash|cudnn|efficient"; throws std::invalid_argument naming the value.
AttentionBackend parse_attention_backend(const std::string& name);
const char* attention_backend_name(AttentionBackend backend);

struct AttentionResult {
  at::Tensor out;  ///< [Nq, H * hd] (or [B, Nq, H * hd] for batched input), q's dtype
  at::Tensor lse;  ///< [H, Nq] (or [B, H, Nq]) float32: log sum_j exp(q.k_j * scale); undefined unless asked for
};

/// softmax(q k^T / sqrt(hd)) v. q: [Nq, H, hd]; k, v: [Nk, H, hd], or all with a leading batch
/// dimension; the last dimension must be contiguous. With `want_lse`, also each query's
/// log-sum-exp per head. While autograd records (training), the GPU runs LibTorch's
/// differentiable attention and `want_lse` is refused.
AttentionResult attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          bool want_lse, AttentionBackend backend = AttentionBackend::kAuto);

/// Sets the backend that kAuto picks on the GPU (the process-wide default; the CLI's --attention).
void set_default_gpu_attention(AttentionBackend backend);

}  // namespace astraea
