#include "kernels/cuda_check.h"

#include <cstdio>

namespace astraea::kernels::detail {

namespace {
std::string describe(cudaError_t code, const char* call, const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: " + cudaGetErrorName(code) + " (" +
         cudaGetErrorString(code) + ")";
}
}  // namespace

void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line) {
  throw CudaError(code, describe(code, call, file, line));
}

void log_cuda_error(cudaError_t code, const char* call, const char* file, int line) noexcept {
  // fprintf rather than iostreams or std::string: nothing here may throw.
  std::fprintf(stderr, "astraea: %s:%d: %s failed: %s (%s)\n", file, line, call, cudaGetErrorName(code),
               cudaGetErrorString(code));
}

}  // namespace astraea::kernels::detail
