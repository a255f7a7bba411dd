#include "kernels/types.h"

#include "astraea/config.h"

#if ASTRAEA_HAS_CUDA_KERNELS
#include <cuda_runtime_api.h>
#endif

namespace astraea::kernels {

bool cuda_device_available() noexcept {
#if ASTRAEA_HAS_CUDA_KERNELS
  static const bool available = [] {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    // No driver or no device is reported as an error; clear it so that the next
    // cudaGetLastError() after a launch does not pick it up.
    cudaGetLastError();
    return status == cudaSuccess && count > 0;
  }();
  return available;
#else
  return false;
#endif
}

}  // namespace astraea::kernels
