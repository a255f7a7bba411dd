// Every difference between LibTorch 1.13 (Debian, CPU) and 2.x (GPU host, CUDA) lives here.
// Include only from .cpp files: it pulls in ATen.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/version.h>

#include <optional>
#include <string>
#include <tuple>

#include "astraea/config.h"

#define ASTRAEA_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

#if ASTRAEA_HAS_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace astraea::compat {

/// The fused GPU attention kernels that return each query's log-sum-exp.
enum class FusedAttention { kFlash, kCudnn, kEfficient };

/// Runs one fused attention kernel on [B, H, N, hd] tensors; returns (out [B, H, Nq, hd],
/// lse [B, H, Nq] float32). Only on a CUDA build of LibTorch 2.x.
inline std::tuple<at::Tensor, at::Tensor> fused_attention(FusedAttention kind, const at::Tensor& q,
                                                          const at::Tensor& k, const at::Tensor& v,
                                                          double scale) {
#if ASTRAEA_HAS_TORCH_CUDA && ASTRAEA_TORCH_AT_LEAST(2, 5)
  switch (kind) {
    case FusedAttention::kFlash: {
      auto r = at::_scaled_dot_product_flash_attention(q, k, v, 0.0, false, false, scale);
      return {std::get<0>(r), std::get<1>(r)};
    }
    case FusedAttention::kCudnn: {
      auto r = at::_scaled_dot_product_cudnn_attention(q, k, v, std::nullopt, true, 0.0, false, false, scale);
      const auto& lse = std::get<1>(r);
      return {std::get<0>(r), lse.reshape({q.size(0), q.size(1), q.size(2)})};
    }
    case FusedAttention::kEfficient: {
      auto r = at::_scaled_dot_product_efficient_attention(q, k, v, std::nullopt, true, 0.0, false, scale);
      // Its log-sum-exp is padded along the query axis to a multiple of 32.
      return {std::get<0>(r), std::get<1>(r).narrow(2, 0, q.size(2))};
    }
  }
#endif
  (void)kind, (void)k, (void)v, (void)scale;
  TORCH_CHECK(false, "fused attention needs a CUDA build of LibTorch 2.5 or newer (this one is ",
              TORCH_VERSION, ")");
  return {q, q};
}

/// softmax(q k^T * scale) v on [B, H, N, hd] through LibTorch's differentiable attention (training).
inline at::Tensor differentiable_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           double scale) {
#if ASTRAEA_TORCH_AT_LEAST(2, 1)
  return at::scaled_dot_product_attention(q, k, v, {}, 0.0, false, scale);
#else
  auto s = at::matmul(q.to(at::kFloat), k.to(at::kFloat).transpose(-2, -1)) * scale;
  return at::matmul(at::softmax(s, -1), v.to(at::kFloat)).to(q.scalar_type());
#endif
}

/// gelu_tanh(x @ w^T + b), with the activation fused into the GEMM's epilogue where cuBLASLt can.
inline at::Tensor linear_gelu_tanh(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
#if ASTRAEA_HAS_TORCH_CUDA
  if (x.is_cuda() && !(at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad()))) {
    auto shape = x.sizes().vec();
    shape.back() = w.size(0);
    return at::_addmm_activation(b, x.reshape({-1, x.size(-1)}), w.t(), 1, 1, true).view(shape);
  }
#endif
  return at::gelu(at::linear(x, w, b), "tanh");
}

/// The raw stream the kernels/ entry points take, for the current stream of `device`.
inline void* current_stream(const at::Device& device) {
#if ASTRAEA_HAS_TORCH_CUDA
  return at::cuda::getCurrentCUDAStream(device.index()).stream();
#else
  (void)device;
  return nullptr;
#endif
}

/// True when this LibTorch can run on a CUDA device and one is present.
inline bool cuda_available() {
#if ASTRAEA_HAS_TORCH_CUDA
  return at::hasCUDA() && at::cuda::device_count() > 0;
#else
  return false;
#endif
}

/// The number of streaming multiprocessors of a CUDA device; 0 without CUDA.
inline int64_t multiprocessor_count(const at::Device& device) {
#if ASTRAEA_HAS_TORCH_CUDA
  return at::cuda::getDeviceProperties(device.index() < 0 ? at::cuda::current_device() : device.index())
      ->multiProcessorCount;
#else
  (void)device;
  return 0;
#endif
}

/// Lets float32 matrix products use TF32 on the GPU.
inline void allow_tf32(bool on) { at::globalContext().setAllowTF32CuBLAS(on); }

/// The device's marketing name ("NVIDIA H100 80GB HBM3"), or "cpu".
inline std::string device_name(const at::Device& device) {
#if ASTRAEA_HAS_TORCH_CUDA
  if (device.is_cuda()) return at::cuda::getDeviceProperties(device.index())->name;
#endif
  return device.is_cuda() ? "cuda" : "cpu";
}

/// The most device memory LibTorch's allocator has held in tensors on DEVICE since the last
/// reset_peak_device_bytes (0 on the CPU, which has no such count).
inline int64_t peak_device_bytes(const at::Device& device) {
#if ASTRAEA_HAS_TORCH_CUDA
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
    return c10::cuda::CUDACachingAllocator::getDeviceStats(index).allocated_bytes[0].peak;  // [0]: all pools
  }
#endif
  (void)device;
  return 0;
}
inline void reset_peak_device_bytes(const at::Device& device) {
#if ASTRAEA_HAS_TORCH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : c10::cuda::current_device());
  }
#endif
  (void)device;
}

/// Blocks until all work queued on `device` has finished.
inline void synchronize(const at::Device& device) {
#if ASTRAEA_HAS_TORCH_CUDA
  if (device.is_cuda()) at::cuda::getCurrentCUDAStream(device.index()).synchronize();
#else
  (void)device;
#endif
}

}  // namespace astraea::compat
