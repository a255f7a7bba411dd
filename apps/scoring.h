// Scoring videos for the commands that make or read them (score, generate, sweep): loading a video
// file, computing a metric set, and turning the scores into printed lines and store records.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "db/store.h"
#include "io/video_io.h"
#include "quality/metric.h"

namespace astraea::app {

/// A video from PATH for FLAG: our safetensors layout (key `video`, float32 [F, H, W, 3] in
/// [0, 1]) or anything FFmpeg decodes. Sets *fps when the file says (MP4), else leaves it.
/// Throws UsageError naming the flag, file and what is wrong.
at::Tensor load_video(const std::string& flag, const std::string& path, double* fps,
                      VideoDecode decode = VideoDecode::kFaithful);

using Scores = quality::Scores;

/// quality::score with PROMPT's semantic check (when a metric judges prompts), a missing
/// --reference named; VBENCH_VIDEO, when given, is what VBench's metrics score instead (an MP4 as
/// cv2 decodes it).
Scores score_video(const at::Tensor& video, const at::Tensor* reference, const std::string& prompt,
                   double fps, const quality::MetricList& metrics, const at::Tensor* vbench_video = nullptr);

/// The scores as self-describing records (source "quality"); +inf PSNR is kept as such.
std::vector<db::MeasurementRecord> score_records(const Scores& scores);

/// "psnr 31.42 dB", one metric a line, or a JSON object (PSNR +inf as the string "inf").
void print_scores(std::ostream& out, const Scores& scores, bool json);

}  // namespace astraea::app
