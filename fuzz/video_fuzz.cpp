// The video reader (FFmpeg) on arbitrary bytes, both decodes: a clip or VideoError, and a clip's
// pixels fill exactly its frames x height x width x 3 floats in [0, 1].
#include <cstdlib>

#include "fuzz/fuzz_file.h"
#include "io/video_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = astraea::fuzz::as_file(data, size, ".mp4");
  for (auto decode : {astraea::VideoDecode::kFaithful, astraea::VideoDecode::kOpenCv}) {
    try {
      const auto v = astraea::read_video(path, decode);
      if (v.rgb.size() != static_cast<size_t>(v.frames * v.height * v.width * 3)) std::abort();
      for (float x : v.rgb)
        if (!(x >= 0.f && x <= 1.f)) std::abort();
    } catch (const astraea::VideoError&) {
    }
  }
  return 0;
}
