#include "io/video_io.h"

#include "astraea/config.h"

#if ASTRAEA_HAS_FFMPEG
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#endif

namespace astraea {

#if !ASTRAEA_HAS_FFMPEG

void write_mp4(const std::string& path, const float*, int64_t, int64_t, int64_t, double, int) {
  throw VideoError(path + ": built without FFmpeg; write .safetensors instead");
}

Video read_video(const std::string& path, VideoDecode) {
  throw VideoError(path + ": built without FFmpeg; write .safetensors instead");
}

#else

namespace {

// MP4 cannot tell every player to crop one pixel (H.264 crops 4:2:0 video by whole chroma
// samples), so write_mp4 records the true size of an odd-sized clip in this tag and read_video
// crops its padding off again. Other players show the repeated edge row/column.
constexpr const char* kSourceSizeKey = "astraea_source_size";

// Owners for FFmpeg objects whose free function takes a pointer to the pointer.
template <typename T, void (*Free)(T**)>
struct FreeWith {
  void operator()(T* object) const { Free(&object); }
};
using InputFormat = std::unique_ptr<AVFormatContext, FreeWith<AVFormatContext, avformat_close_input> >;
using CodecContext = std::unique_ptr<AVCodecContext, FreeWith<AVCodecContext, avcodec_free_context> >;
using Frame = std::unique_ptr<AVFrame, FreeWith<AVFrame, av_frame_free> >;
using Packet = std::unique_ptr<AVPacket, FreeWith<AVPacket, av_packet_free> >;

struct CloseOutput {
  void operator()(AVFormatContext* format) const {
    avio_closep(&format->pb);
    avformat_free_context(format);
  }
};
using OutputFormat = std::unique_ptr<AVFormatContext, CloseOutput>;

struct FreeScaler {
  void operator()(SwsContext* scaler) const { sws_freeContext(scaler); }
};
using Scaler = std::unique_ptr<SwsContext, FreeScaler>;

struct Options {
  AVDictionary* entries = nullptr;
  ~Options() { av_dict_free(&entries); }
};

// Removes the file at PATH on scope exit unless told to keep it.
struct TemporaryFile {
  std::string path;
  bool keep = false;
  ~TemporaryFile() {
    if (!keep) std::remove(path.c_str());
  }
};

// Returns CODE, or throws "PATH: WHAT: <FFmpeg's reason>" when it is an FFmpeg error.
int check(int code, const std::string& path, const std::string& what) {
  if (code >= 0) return code;
  char reason[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, reason, sizeof reason);
  throw VideoError(path + ": " + what + ": " + reason);
}

template <typename T>
T* check_allocated(T* object, const std::string& path, const std::string& what) {
  if (!object) throw VideoError(path + ": " + what + ": out of memory");
  return object;
}

// FFmpeg logs warnings and progress to stderr by default; errors reach the caller as VideoError.
void quiet_ffmpeg_log() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_ERROR); });
}

Frame make_frame(AVPixelFormat format, int width, int height, const std::string& path) {
  Frame frame(check_allocated(av_frame_alloc(), path, "cannot allocate a frame"));
  frame->format = format;
  frame->width = width;
  frame->height = height;
  check(av_frame_get_buffer(frame.get(), 0), path, "cannot allocate a frame");
  return frame;
}

// Fills FRAME (RGB48, as large as RGB or one row/column larger) from one frame of RGB, clamped to
// [0, 1]; the padding repeats the last row and column.
void fill_rgb48(AVFrame* frame, const float* rgb, int64_t height, int64_t width) {
  for (int y = 0; y < frame->height; ++y) {
    const float* row = rgb + std::min<int64_t>(y, height - 1) * width * 3;
    auto* out = reinterpret_cast<uint16_t*>(frame->data[0] + int64_t{y} * frame->linesize[0]);
    for (int x = 0; x < frame->width; ++x) {
      const float* pixel = row + std::min<int64_t>(x, width - 1) * 3;
      for (int c = 0; c < 3; ++c)
        out[3 * x + c] = static_cast<uint16_t>(std::clamp(pixel[c], 0.0f, 1.0f) * 65535.0f + 0.5f);
    }
  }
}

bool is_yuv(AVPixelFormat format) {
  const AVPixFmtDescriptor* descriptor = av_pix_fmt_desc_get(format);
  return descriptor && !(descriptor->flags & AV_PIX_FMT_FLAG_RGB) && descriptor->nb_components >= 3;
}

}  // namespace

void write_mp4(const std::string& path, const float* rgb, int64_t frames, int64_t height, int64_t width,
               double fps, int crf) {
  quiet_ffmpeg_log();
  constexpr int64_t kMaxSide = 1 << 15;  // far beyond any H.264 level; keeps sizes within int
  if (!rgb || frames < 1 || height < 1 || width < 1 || height > kMaxSide || width > kMaxSide) {
    throw VideoError(path + ": cannot write " + std::to_string(frames) + " frames of height " +
                     std::to_string(height) + ", width " + std::to_string(width) +
                     (rgb ? "" : " from null data") + ": need at least one frame, sides 1 to " +
                     std::to_string(kMaxSide));
  }
  if (!std::isfinite(fps) || fps <= 0) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", fps);
    throw VideoError(path + ": fps " + text + " is not a positive number");
  }
  if (crf < 0 || crf > 51) throw VideoError(path + ": crf " + std::to_string(crf) + " is outside 0..51");
  // Checked before anything is created, so a bad clip leaves no file and costs no encoding.
  const int64_t frame_values = height * width * 3;
  for (int64_t f = 0; f < frames; ++f) {
    const float* frame = rgb + f * frame_values;
    const float* nan = std::find_if(frame, frame + frame_values, [](float v) { return std::isnan(v); });
    if (nan != frame + frame_values) {
      const int64_t pixel = (nan - frame) / 3;
      throw VideoError(path + ": frame " + std::to_string(f) + " holds NaN at row " +
                       std::to_string(pixel / width) + ", column " + std::to_string(pixel % width));
    }
  }
  // yuv420p stores chroma per 2x2 block, so x264 needs even sides.
  const int padded_height = static_cast<int>(height + height % 2);
  const int padded_width = static_cast<int>(width + width % 2);

  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_H264);
  if (!codec) throw VideoError(path + ": this FFmpeg has no H.264 encoder (libx264 or other)");

  // Declared first so it is removed last, after the muxer has closed it.
  TemporaryFile temporary{path + ".tmp." + std::to_string(::getpid())};
  AVFormatContext* raw_output = nullptr;
  check(avformat_alloc_output_context2(&raw_output, nullptr, "mp4", temporary.path.c_str()), path,
        "cannot set up the MP4 muxer");
  const OutputFormat output(raw_output);

  const CodecContext encoder(
      check_allocated(avcodec_alloc_context3(codec), path, "cannot set up the encoder"));
  encoder->width = padded_width;
  encoder->height = padded_height;
  encoder->pix_fmt = AV_PIX_FMT_YUV420P;
  encoder->framerate = av_d2q(fps, 1 << 16);  // 29.97 becomes 30000/1001
  encoder->time_base = av_inv_q(encoder->framerate);
  // The tags browsers use to pick the YUV -> RGB matrix; the scaler below uses the same one.
  encoder->color_range = AVCOL_RANGE_MPEG;
  encoder->colorspace = AVCOL_SPC_BT709;
  encoder->color_primaries = AVCOL_PRI_BT709;
  encoder->color_trc = AVCOL_TRC_BT709;
  if (output->oformat->flags & AVFMT_GLOBALHEADER) encoder->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  Options encoder_options;
  if (std::strcmp(codec->name, "libx264") == 0) {
    check(av_dict_set(&encoder_options.entries, "crf", std::to_string(crf).c_str(), 0), path,
          "cannot set crf");
  }
  check(avcodec_open2(encoder.get(), codec, &encoder_options.entries), path,
        std::string("cannot open the H.264 encoder ") + codec->name);

  AVStream* stream = check_allocated(avformat_new_stream(output.get(), nullptr), path, "cannot add a stream");
  stream->time_base = encoder->time_base;
  stream->avg_frame_rate = encoder->framerate;
  check(avcodec_parameters_from_context(stream->codecpar, encoder.get()), path,
        "cannot set up the video stream");

  Options muxer_options;
  std::string movflags = "+faststart";  // moov before mdat, so playback starts before the download ends
  if (padded_height != height || padded_width != width) {
    const std::string size = std::to_string(width) + "x" + std::to_string(height);
    check(av_dict_set(&output->metadata, kSourceSizeKey, size.c_str(), 0), path, "cannot tag the size");
    movflags += "+use_metadata_tags";  // the mp4 muxer drops keys it does not know without it
  }
  check(av_dict_set(&muxer_options.entries, "movflags", movflags.c_str(), 0), path, "cannot set movflags");
  check(avio_open(&output->pb, temporary.path.c_str(), AVIO_FLAG_WRITE), path, "cannot create the file");
  check(avformat_write_header(output.get(), &muxer_options.entries), path, "cannot write the MP4 header");

  const Frame source = make_frame(AV_PIX_FMT_RGB48, padded_width, padded_height, path);
  const Frame yuv = make_frame(AV_PIX_FMT_YUV420P, padded_width, padded_height, path);
  const Scaler to_yuv(check_allocated(
      sws_getContext(padded_width, padded_height, AV_PIX_FMT_RGB48, padded_width, padded_height,
                     AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, nullptr,
                     nullptr, nullptr),
      path, "cannot set up RGB to YUV conversion"));
  // Full-range RGB in; limited-range BT.709 YUV out, as the stream is tagged.
  check(sws_setColorspaceDetails(to_yuv.get(), sws_getCoefficients(SWS_CS_DEFAULT), 1,
                                 sws_getCoefficients(SWS_CS_ITU709), 0, 0, 1 << 16, 1 << 16),
        path, "cannot set up RGB to YUV conversion");

  const Packet packet(check_allocated(av_packet_alloc(), path, "cannot allocate a packet"));
  // Sends FRAME (null: end of stream) and muxes every packet the encoder has ready.
  auto encode = [&](const AVFrame* frame) {
    check(avcodec_send_frame(encoder.get(), frame), path, "encoding failed");
    for (;;) {
      const int code = avcodec_receive_packet(encoder.get(), packet.get());
      if (code == AVERROR(EAGAIN) || code == AVERROR_EOF) return;
      check(code, path, "encoding failed");
      if (packet->duration == 0) packet->duration = 1;  // one frame; else the last frame gets no time
      av_packet_rescale_ts(packet.get(), encoder->time_base, stream->time_base);
      packet->stream_index = stream->index;
      check(av_interleaved_write_frame(output.get(), packet.get()), path, "cannot write a packet");
    }
  };
  for (int64_t f = 0; f < frames; ++f) {
    fill_rgb48(source.get(), rgb + f * frame_values, height, width);
    // The encoder may still hold a reference to the previous frame's buffers.
    check(av_frame_make_writable(yuv.get()), path, "cannot allocate a frame");
    check(sws_scale(to_yuv.get(), source->data, source->linesize, 0, padded_height, yuv->data, yuv->linesize),
          path, "cannot convert frame " + std::to_string(f) + " to YUV");
    yuv->pts = f;
    encode(yuv.get());
  }
  encode(nullptr);
  check(av_write_trailer(output.get()), path, "cannot finish the MP4");
  check(avio_closep(&output->pb), path, "cannot close the file");
  if (std::rename(temporary.path.c_str(), path.c_str()) != 0) {
    throw VideoError(path + ": cannot rename '" + temporary.path + "' over it: " + std::strerror(errno));
  }
  temporary.keep = true;
}

Video read_video(const std::string& path, VideoDecode decode) {
  const bool opencv = decode == VideoDecode::kOpenCv;
  quiet_ffmpeg_log();
  AVFormatContext* raw_input = nullptr;
  check(avformat_open_input(&raw_input, path.c_str(), nullptr, nullptr), path,
        "cannot open");  // frees on failure
  const InputFormat input(raw_input);
  check(avformat_find_stream_info(input.get(), nullptr), path, "cannot read the stream parameters");
  const AVCodec* codec = nullptr;
  const int stream_index = check(av_find_best_stream(input.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0),
                                 path, "no decodable video stream");
  AVStream* stream = input->streams[stream_index];
  for (unsigned i = 0; i < input->nb_streams; ++i) {
    if (static_cast<int>(i) != stream_index) input->streams[i]->discard = AVDISCARD_ALL;
  }
  const CodecContext decoder(
      check_allocated(avcodec_alloc_context3(codec), path, "cannot set up the decoder"));
  check(avcodec_parameters_to_context(decoder.get(), stream->codecpar), path, "cannot set up the decoder");
  decoder->thread_count = 0;  // one per core
  check(avcodec_open2(decoder.get(), codec, nullptr), path,
        std::string("cannot open the decoder ") + codec->name);

  Video video;
  video.fps = av_q2d(av_guess_frame_rate(input.get(), stream, nullptr));
  int tagged_width = 0, tagged_height = 0;
  if (const AVDictionaryEntry* tag = av_dict_get(input->metadata, kSourceSizeKey, nullptr, 0)) {
    if (std::sscanf(tag->value, "%dx%d", &tagged_width, &tagged_height) != 2)
      tagged_width = tagged_height = 0;
  }

  int decoded_width = 0, decoded_height = 0;  // of the first frame; later frames are scaled to it
  Frame rgb;
  Scaler to_rgb;
  auto append = [&](const AVFrame* frame) {
    const std::string where = "frame " + std::to_string(video.frames);
    if (video.frames == 0) {
      decoded_width = frame->width;
      decoded_height = frame->height;
      // Undo only write_mp4's padding, at most one row and one column; never crop anything else.
      const bool padded = !opencv && tagged_width >= decoded_width - 1 && tagged_width <= decoded_width &&
                          tagged_height >= decoded_height - 1 && tagged_height <= decoded_height;
      video.width = padded ? tagged_width : decoded_width;
      video.height = padded ? tagged_height : decoded_height;
      rgb = make_frame(opencv ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_RGB48, decoded_width, decoded_height, path);
    }
    const auto format = static_cast<AVPixelFormat>(frame->format);
    // Returns the same context while the input stays alike, else frees it and makes a new one.
    to_rgb.reset(
        sws_getCachedContext(to_rgb.release(), frame->width, frame->height, format, decoded_width,
                             decoded_height, opencv ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_RGB48,
                             opencv ? SWS_BICUBIC : SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
                             nullptr, nullptr, nullptr));
    if (!to_rgb) {
      const char* name = av_get_pix_fmt_name(format);
      throw VideoError(path + ": " + where + ": cannot convert pixel format " + (name ? name : "?") +
                       " to RGB");
    }
    if (is_yuv(format) && !opencv) {  // OpenCV leaves swscale's defaults
      // The stream's own matrix and range (unspecified means BT.601, as FFmpeg assumes).
      const bool full_range = frame->color_range == AVCOL_RANGE_JPEG || format == AV_PIX_FMT_YUVJ420P ||
                              format == AV_PIX_FMT_YUVJ422P || format == AV_PIX_FMT_YUVJ444P;
      check(sws_setColorspaceDetails(to_rgb.get(), sws_getCoefficients(frame->colorspace), full_range,
                                     sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16),
            path, where + ": cannot set up YUV to RGB conversion");
    }
    check(sws_scale(to_rgb.get(), frame->data, frame->linesize, 0, frame->height, rgb->data, rgb->linesize),
          path, where + ": cannot convert to RGB");
    const size_t row_values = static_cast<size_t>(video.width) * 3;
    size_t next = video.rgb.size();
    video.rgb.resize(next + row_values * static_cast<size_t>(video.height));
    for (int64_t y = 0; y < video.height; ++y, next += row_values) {
      if (opencv) {
        const uint8_t* row = rgb->data[0] + y * rgb->linesize[0];
        for (size_t i = 0; i < row_values; ++i) video.rgb[next + i] = row[i] * (1.0f / 255.0f);
        continue;
      }
      const auto* row = reinterpret_cast<const uint16_t*>(rgb->data[0] + y * rgb->linesize[0]);
      for (size_t i = 0; i < row_values; ++i) video.rgb[next + i] = row[i] * (1.0f / 65535.0f);
    }
    ++video.frames;
  };

  const Packet packet(check_allocated(av_packet_alloc(), path, "cannot allocate a packet"));
  const Frame frame(check_allocated(av_frame_alloc(), path, "cannot allocate a frame"));
  auto receive_frames = [&] {
    for (;;) {
      const int code = avcodec_receive_frame(decoder.get(), frame.get());
      if (code == AVERROR(EAGAIN) || code == AVERROR_EOF) return;
      check(code, path, "cannot decode frame " + std::to_string(video.frames));
      append(frame.get());
      av_frame_unref(frame.get());
    }
  };
  for (;;) {
    const int code = av_read_frame(input.get(), packet.get());
    if (code == AVERROR_EOF) break;
    check(code, path, "cannot read after frame " + std::to_string(video.frames));
    if (packet->stream_index == stream_index) {
      const int sent = avcodec_send_packet(decoder.get(), packet.get());
      av_packet_unref(packet.get());
      check(sent, path, "cannot decode frame " + std::to_string(video.frames));
      receive_frames();
    } else {
      av_packet_unref(packet.get());
    }
  }
  check(avcodec_send_packet(decoder.get(), nullptr), path, "cannot flush the decoder");
  receive_frames();
  if (video.frames == 0) throw VideoError(path + ": no video frames could be decoded");
  return video;
}

#endif  // ASTRAEA_HAS_FFMPEG

}  // namespace astraea
