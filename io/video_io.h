// Video files in and out, through FFmpeg's libraries when the build found them.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace astraea {

/// A video that cannot be written or read; the message names the file (and the frame, if one is
/// at fault).
class VideoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A decoded clip: RGB float32 in [0, 1], laid out [frames, height, width, 3].
struct Video {
  int64_t frames = 0, height = 0, width = 0;
  double fps = 0;
  std::vector<float> rgb;
};

/// Encodes RGB ([frames, height, width, 3] float32; clamped to [0, 1], NaN is an error) as H.264
/// in an MP4 that browsers play: yuv420p, BT.709, moov atom first. An odd size is padded to even
/// by repeating the last row/column, and read_video crops it back. CRF is libx264's quality: lower
/// is better, 18 looks lossless, 0 is lossless but needs a High 4:4:4 decoder (not browsers).
/// The file appears at PATH complete or not at all.
void write_mp4(const std::string& path, const float* rgb, int64_t frames, int64_t height, int64_t width,
               double fps, int crf = 18);

/// How read_video turns decoded frames into RGB.
enum class VideoDecode {
  /// The stream's own matrix and range, accurate rounding, full chroma interpolation, through
  /// 16-bit RGB; write_mp4's even-size padding cropped back. What everything but scoring reads.
  kFaithful,
  /// As OpenCV's cv2.VideoCapture does (its FFmpeg backend, what VBench reads frames with):
  /// swscale with SWS_BICUBIC alone to 8-bit RGB, swscale's default BT.601 matrix whatever the
  /// stream's tag, nothing cropped. What the VBench-proxy metric scores an MP4 by.
  kOpenCv,
};

/// Decodes every frame of the first video stream of PATH (any format FFmpeg reads).
Video read_video(const std::string& path, VideoDecode decode = VideoDecode::kFaithful);

}  // namespace astraea
