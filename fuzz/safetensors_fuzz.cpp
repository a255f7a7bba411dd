// The safetensors reader on arbitrary bytes: it opens the file or throws SafetensorsError, and
// every view it hands out lies inside the mapping and matches its dtype and shape.
#include <cstdlib>

#include "fuzz/fuzz_file.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = astraea::fuzz::as_file(data, size, ".safetensors");
  try {
    const auto f = astraea::SafetensorsFile::open(path);
    for (const auto& t : f.tensors()) {
      if (t.nbytes != static_cast<size_t>(t.numel()) * astraea::dtype_size(t.dtype)) std::abort();
      volatile std::byte sink{};
      for (size_t i = 0; i < t.nbytes; i += 4096) sink = t.data[i];  // ASan: inside the mapping
      if (t.nbytes) sink = t.data[t.nbytes - 1];
      if (f.find(t.name) != &t) std::abort();
    }
  } catch (const astraea::SafetensorsError&) {
  }
  return 0;
}
