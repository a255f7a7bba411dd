// Checking CUDA runtime calls. Included by .cu files and tests only, never by an op's public header.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/types.h"

static_assert(std::is_same_v<astraea::kernels::Stream, cudaStream_t>,
              "kernels::Stream must stay interchangeable with cudaStream_t");

namespace astraea::kernels {

/// A CUDA runtime call failed; what() names the call, where it was made, and the error.
class CudaError : public std::runtime_error {
 public:
  CudaError(cudaError_t code, const std::string& message) : std::runtime_error(message), code_(code) {}
  /// The runtime's error code.
  cudaError_t code() const noexcept { return code_; }

 private:
  cudaError_t code_;
};

namespace detail {
/// Out of line so that each check site stays a compare and a cold call.
[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line);
/// Writes one line to stderr; for destructors and other places that must not throw.
void log_cuda_error(cudaError_t code, const char* call, const char* file, int line) noexcept;
}  // namespace detail

}  // namespace astraea::kernels

/// Throws astraea::kernels::CudaError when `call` does not return cudaSuccess.
#define ASTRAEA_CUDA_CHECK(call)                                                                     \
  do {                                                                                               \
    const cudaError_t astraea_cuda_status_ = (call);                                                 \
    if (astraea_cuda_status_ != cudaSuccess) {                                                       \
      ::astraea::kernels::detail::throw_cuda_error(astraea_cuda_status_, #call, __FILE__, __LINE__); \
    }                                                                                                \
  } while (0)

/// Logs, never throws, when `call` does not return cudaSuccess.
#define ASTRAEA_CUDA_CHECK_NOEXCEPT(call)                                                          \
  do {                                                                                             \
    const cudaError_t astraea_cuda_status_ = (call);                                               \
    if (astraea_cuda_status_ != cudaSuccess) {                                                     \
      ::astraea::kernels::detail::log_cuda_error(astraea_cuda_status_, #call, __FILE__, __LINE__); \
    }                                                                                              \
  } while (0)

/// Put right after a <<<...>>> launch: reports a bad configuration at the launch site.
#define ASTRAEA_CUDA_CHECK_LAUNCH() ASTRAEA_CUDA_CHECK(cudaGetLastError())
