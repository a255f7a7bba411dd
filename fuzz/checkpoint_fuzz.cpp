// A sharded checkpoint's index on arbitrary bytes, beside one real shard it may name: it opens
// or throws SafetensorsError, and every tensor it maps is found in the shard that holds it.
#include <cstdlib>
#include <filesystem>

#include "fuzz/fuzz_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace {

// A folder beside the scratch index holding "a.safetensors" with tensors "x" and "y".
std::string index_path() {
  namespace fs = std::filesystem;
  static const std::string path = [] {
    const auto scratch = astraea::fuzz::as_file(nullptr, 0, ".dir");
    fs::remove(scratch);
    fs::create_directories(scratch);
    const float x[4] = {1, 2, 3, 4};
    astraea::write_safetensors(scratch + "/a.safetensors", {{"x", astraea::DType::F32, {2, 2}, x},
                                                            {"y", astraea::DType::F32, {1}, x}});
    return scratch + "/model.safetensors.index.json";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = index_path();
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  try {
    const auto c = astraea::Checkpoint::open(path);
    for (const auto* t : c.tensors()) {
      if (c.find(t->name) != t) std::abort();
      if (c.file_of(t->name).empty()) std::abort();
    }
  } catch (const astraea::SafetensorsError&) {
  }
  return 0;
}
