// Built only when FFmpeg is found (ASTRAEA_HAS_FFMPEG).
#include "io/video_io.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

namespace astraea {
namespace {

namespace fs = std::filesystem;

// A pale yellow square moving left to right over a horizontal/vertical colour gradient: smooth
// areas plus sharp edges, and every frame different from the next, so a shifted frame shows up as
// a mismatch. The square differs from the background mostly in brightness: yuv420p keeps colour
// at half resolution, and a saturated red square's edges alone cost ~28 dB on a 33x17 frame even
// losslessly encoded, which would hide the codec path this test is about.
std::vector<float> moving_square(int64_t frames, int64_t height, int64_t width) {
  std::vector<float> rgb(static_cast<size_t>(frames * height * width * 3));
  const int64_t side = std::max<int64_t>(height / 3, 2);
  for (int64_t f = 0; f < frames; ++f) {
    const int64_t left = frames > 1 ? f * (width - side) / (frames - 1) : 0;
    const int64_t top = (height - side) / 2;
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        float* pixel = &rgb[static_cast<size_t>(((f * height + y) * width + x) * 3)];
        const bool in_square = x >= left && x < left + side && y >= top && y < top + side;
        pixel[0] = in_square ? 0.95f : 0.1f + 0.6f * x / (width - 1);
        pixel[1] = in_square ? 0.9f : 0.2f + 0.5f * y / (height - 1);
        pixel[2] = in_square ? 0.75f : 0.5f;
      }
    }
  }
  return rgb;
}

// PSNR in dB between frame A_FRAME of A and frame B_FRAME of B, both [frames, height, width, 3].
double psnr_db(const std::vector<float>& a, int64_t a_frame, const std::vector<float>& b, int64_t b_frame,
               int64_t frame_values) {
  double squared_error = 0;
  for (int64_t i = 0; i < frame_values; ++i) {
    const double diff = a[a_frame * frame_values + i] - b[b_frame * frame_values + i];
    squared_error += diff * diff;
  }
  const double mse = squared_error / frame_values;
  return mse == 0 ? std::numeric_limits<double>::infinity() : 10 * std::log10(1.0 / mse);
}

class VideoIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "video_io_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    return names;
  }

  // Writes a moving-square clip, reads it back and checks size, rate, overall quality, and that
  // the first and last frames line up with their own inputs rather than a neighbour.
  void check_round_trip(int64_t frames, int64_t height, int64_t width) {
    const std::vector<float> input = moving_square(frames, height, width);
    const std::string path = (dir_ / "clip.mp4").string();
    write_mp4(path, input.data(), frames, height, width, 24.0);
    EXPECT_EQ(files(), std::vector<std::string>{"clip.mp4"});

    const Video video = read_video(path);
    ASSERT_EQ(video.frames, frames);
    ASSERT_EQ(video.height, height);
    ASSERT_EQ(video.width, width);
    EXPECT_NEAR(video.fps, 24.0, 1e-6);
    ASSERT_EQ(video.rgb.size(), input.size());
    for (float value : video.rgb) ASSERT_TRUE(value >= 0 && value <= 1) << value;

    const int64_t frame_values = height * width * 3;
    double total_psnr_db = 0;
    for (int64_t f = 0; f < frames; ++f) total_psnr_db += psnr_db(video.rgb, f, input, f, frame_values);
    EXPECT_GT(total_psnr_db / frames, 30.0);
    for (int64_t f : {int64_t{0}, frames - 1}) {
      SCOPED_TRACE("frame " + std::to_string(f));
      const int64_t neighbour = f == 0 ? 1 : frames - 2;
      const double own_db = psnr_db(video.rgb, f, input, f, frame_values);
      EXPECT_GT(own_db, 30.0);
      EXPECT_GT(own_db, psnr_db(video.rgb, f, input, neighbour, frame_values) + 10.0);
    }
  }

  fs::path dir_;
};

TEST_F(VideoIoTest, RoundTripKeepsFramesAndQuality) { check_round_trip(12, 48, 64); }

TEST_F(VideoIoTest, OddSizeRoundTripsCropped) { check_round_trip(12, 17, 33); }

// The scoring decode, as cv2.VideoCapture reads: our MP4s are BT.709, which it converts with
// BT.601 anyway. A flat colour's Y, Cb, Cr (BT.709, limited range, from the faithful decode)
// turned back by the BT.601 matrix by hand is what it must give; an odd size stays uncropped.
TEST_F(VideoIoTest, TheOpenCvDecodeUsesBt601WhateverTheTagAndCropsNothing) {
  const int64_t frames = 3, height = 17, width = 33;
  const float colour[3] = {0.8f, 0.2f, 0.4f};
  std::vector<float> rgb(static_cast<size_t>(frames * height * width * 3));
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = colour[i % 3];
  const std::string file = (dir_ / "flat.mp4").string();
  write_mp4(file, rgb.data(), frames, height, width, 8.0);
  const auto faithful = read_video(file), opencv = read_video(file, VideoDecode::kOpenCv);
  EXPECT_EQ(faithful.height, height);
  EXPECT_EQ(faithful.width, width);
  EXPECT_EQ(opencv.height, height + 1);  // write_mp4's padding to even, which cv2 sees too
  EXPECT_EQ(opencv.width, width + 1);
  const size_t mid = static_cast<size_t>((height / 2 * width + width / 2) * 3);
  const double r = faithful.rgb[mid], g = faithful.rgb[mid + 1], b = faithful.rgb[mid + 2];
  const double y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  const double Y = 16 + 219 * y, Cb = 128 + 224 * (b - y) / 1.8556, Cr = 128 + 224 * (r - y) / 1.5748;
  const double want[3] = {1.164 * (Y - 16) + 1.596 * (Cr - 128),
                          1.164 * (Y - 16) - 0.392 * (Cb - 128) - 0.813 * (Cr - 128),
                          1.164 * (Y - 16) + 2.017 * (Cb - 128)};
  const size_t cv_mid = static_cast<size_t>((height / 2 * (width + 1) + width / 2) * 3);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(faithful.rgb[mid + c], colour[c], 2.0 / 255) << "channel " << c;
    EXPECT_NEAR(opencv.rgb[cv_mid + c] * 255.0, want[c], 2.0) << "channel " << c;
    EXPECT_NEAR(opencv.rgb[cv_mid + c] * 255.0f, std::round(opencv.rgb[cv_mid + c] * 255.0f), 1e-3)
        << "8-bit levels";
  }
  // The two matrices disagree on this colour by more than the rounding: the decode matters.
  EXPECT_GT(std::abs(opencv.rgb[cv_mid] - faithful.rgb[mid]) * 255.0, 3.0);
}

TEST_F(VideoIoTest, WriteToMissingFolderThrowsAndLeavesNothing) {
  const std::vector<float> input = moving_square(2, 16, 16);
  const std::string path = (dir_ / "no_such_folder" / "clip.mp4").string();
  try {
    write_mp4(path, input.data(), 2, 16, 16, 24.0);
    ADD_FAILURE() << "wrote into a missing folder";
  } catch (const VideoError& error) {
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
  }
  EXPECT_TRUE(files().empty());
}

// The whole file is encoded; only the final rename fails (PATH is a non-empty folder).
TEST_F(VideoIoTest, FailedRenameLeavesNoTemporary) {
  const std::vector<float> input = moving_square(2, 16, 16);
  const fs::path path = dir_ / "clip.mp4";
  fs::create_directories(path / "occupied");
  EXPECT_THROW(write_mp4(path.string(), input.data(), 2, 16, 16, 24.0), VideoError);
  EXPECT_EQ(files(), std::vector<std::string>{"clip.mp4"});
}

TEST_F(VideoIoTest, NanInputThrowsNamingFrame) {
  std::vector<float> input = moving_square(4, 16, 16);
  input[(2 * 16 * 16 + 5 * 16 + 7) * 3 + 1] = std::numeric_limits<float>::quiet_NaN();
  const std::string path = (dir_ / "nan.mp4").string();
  try {
    write_mp4(path, input.data(), 4, 16, 16, 24.0);
    ADD_FAILURE() << "wrote NaN";
  } catch (const VideoError& error) {
    EXPECT_NE(std::string(error.what()).find(path + ": frame 2 holds NaN at row 5, column 7"),
              std::string::npos)
        << error.what();
  }
  EXPECT_TRUE(files().empty());
}

// Frame 0 is all above 1 (one value +inf), frame 1 all below 0: they must come back white and black.
TEST_F(VideoIoTest, OutOfRangeValuesAreClamped) {
  const int64_t frame_values = 16 * 16 * 3;
  std::vector<float> input(2 * frame_values, 5.0f);
  std::fill(input.begin() + frame_values, input.end(), -2.0f);
  input[7] = std::numeric_limits<float>::infinity();
  const std::string path = (dir_ / "clamped.mp4").string();
  write_mp4(path, input.data(), 2, 16, 16, 24.0);
  const Video video = read_video(path);
  ASSERT_EQ(video.frames, 2);
  for (int64_t i = 0; i < frame_values; ++i) {
    ASSERT_NEAR(video.rgb[i], 1.0f, 0.02f) << "value " << i;
    ASSERT_NEAR(video.rgb[frame_values + i], 0.0f, 0.02f) << "value " << i;
  }
}

TEST_F(VideoIoTest, CorruptFileThrows) {
  const std::string path = (dir_ / "corrupt.mp4").string();
  std::mt19937 random(1234);
  std::string bytes(64 * 1024, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random());
  std::ofstream(path, std::ios::binary) << bytes;
  try {
    read_video(path);
    ADD_FAILURE() << "decoded random bytes";
  } catch (const VideoError& error) {
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
  }
}

TEST_F(VideoIoTest, MissingFileThrows) {
  const std::string path = (dir_ / "absent.mp4").string();
  try {
    read_video(path);
    ADD_FAILURE() << "read a missing file";
  } catch (const VideoError& error) {
    EXPECT_NE(std::string(error.what()).find(path + ": cannot open"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace astraea
