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
  at::Tensor
      lse;  ///< [H, Nq] (or [B, H, Nq]) float32: log sum_j exp(q.k_j * scale); undefined unless asked for
};

/// softmax(q k^T / sqrt(hd)) v. q: [Nq, H, hd]; k, v: [Nk, H, hd], or all with a leading batch
/// dimension; the last dimension must be contiguous. With `want_lse`, also each query's
/// log-sum-exp per head. While autograd records (training), the GPU runs LibTorch's
/// differentiable attention and `want_lse` is refused.
AttentionResult attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool want_lse,
                          AttentionBackend backend = AttentionBackend::kAuto);

/// Sets the backend that kAuto picks on the GPU (the process-wide default; the CLI's --attention).
void set_default_gpu_attention(AttentionBackend backend);

/// How many parts to split the keys of one cuDNN attention call into, so that the last wave of its
/// 128-query tiles fills more of the card: 1 to 4 parts that divide the keys into shares of at least
/// 2048, the one with the fewest waves `ceil(tiles * s / multiprocessors) / s` (tiles = batch_heads *
/// ceil(queries / 128)), and only when it saves at least 4% of one part's waves. The parts run as
/// batch items of one launch, each over a contiguous share of the keys, and are merged by their
/// log-sum-exps (kernels/attention_merge.cuh).
int choose_key_splits(int64_t batch_heads, int64_t queries, int64_t keys, int64_t multiprocessors);

/// Overrides choose_key_splits for every later GPU attention call: 0 (the default) chooses per call,
/// 1 never splits, n > 1 splits into n parts wherever that makes shares of at least 2048 keys. For
/// benchmarks and tests.
void set_attention_key_splits(int splits);

}  // namespace astraea
