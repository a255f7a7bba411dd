// The .pth reader (LibTorch's zip reader, our pickle reader) on arbitrary bytes: a state dict of
// tensors that lie inside their storages, or std::runtime_error naming the file.
#include <ATen/ATen.h>

#include <cstdlib>
#include <stdexcept>

#include "fuzz/fuzz_file.h"
#include "model/pth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = astraea::fuzz::as_file(data, size, ".pth");
  try {
    for (const auto& [name, t] : astraea::read_pth(path)) {
      if (name.empty()) std::abort();
      (void)t.sum().item<double>();  // every element read: ASan catches a view past its storage
    }
  } catch (const std::runtime_error&) {
  } catch (const c10::Error&) {
  }
  return 0;
}
