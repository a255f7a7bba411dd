#include "quality/video_metrics.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <stdexcept>
#include <tuple>

#include "astraea/config.h"
#if ASTRAEA_HAS_OPENCV
#include <opencv2/imgproc.hpp>
#include <opencv2/video/tracking.hpp>
#endif

namespace astraea::quality {
namespace {

void check_video(const at::Tensor& v, const char* what) {
  if (!v.defined() || v.dim() != 4 || v.size(3) != 3 || v.size(0) < 1) {
    throw std::invalid_argument(std::string(what) + " must be [frames, height, width, 3], got " +
                                (v.defined() ? c10::str(v.sizes()) : std::string("nothing")));
  }
}

// Python's round(): halves to even, which std::nearbyint does in the default rounding mode.
int py_round(double x) { return static_cast<int>(std::nearbyint(x)); }

// Mean of the largest int(size * SHARE) of VALUES (no minimum: none is 0), as VBench's get_score,
// whose VALUES are the flow magnitudes of frames padded to a multiple of 8.
double top_share_mean(std::vector<float> values, double share) {
  const size_t k = static_cast<size_t>(static_cast<double>(values.size()) * share);
  if (k == 0) return 0.0;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k - 1), values.end(), std::greater<>());
  return std::accumulate(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), 0.0) / static_cast<double>(k);
}

// 8-bit frames, as VBench reads them from a video file.
struct Frames8 {
  int frames = 0, height = 0, width = 0;
  std::vector<std::vector<uint8_t>> rgb, gray;
};

// VIDEO: float32 on the CPU.
Frames8 to_8bit(const at::Tensor& video) {
  const auto u8 = video.clamp(0, 1).mul(255).round().to(at::kByte).contiguous();
  Frames8 f;
  f.frames = static_cast<int>(u8.size(0));
  f.height = static_cast<int>(u8.size(1));
  f.width = static_cast<int>(u8.size(2));
  const size_t n = static_cast<size_t>(f.height) * static_cast<size_t>(f.width);
  const uint8_t* p = u8.data_ptr<uint8_t>();
  for (int i = 0; i < f.frames; ++i) {
    std::vector<uint8_t> rgb(p + i * n * 3, p + (i + 1) * n * 3), gray(n);
    for (size_t j = 0; j < n; ++j) {  // ITU-R BT.601 luma, as cv::COLOR_RGB2GRAY
      gray[j] = static_cast<uint8_t>(std::lround(0.299 * rgb[3 * j] + 0.587 * rgb[3 * j + 1] + 0.114 * rgb[3 * j + 2]));
    }
    f.rgb.push_back(std::move(rgb));
    f.gray.push_back(std::move(gray));
  }
  return f;
}

std::vector<float> magnitudes(const std::vector<float>& flow) {
  std::vector<float> m(flow.size() / 2);
  for (size_t i = 0; i < m.size(); ++i) m[i] = std::hypot(flow[2 * i], flow[2 * i + 1]);
  return m;
}

double mean_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
  return s / static_cast<double>(a.size());
}

#if ASTRAEA_HAS_OPENCV
// The middle frame between A and B (RGB), from FLOW, A -> B: each side is sampled half-way
// along the flow and the two are averaged (the flow at a pixel stands in for the flow through it),
// in floats, then truncated to 8 bits as VBench's AMT path does (tensor2img: astype(uint8)).
std::vector<uint8_t> interpolate_middle(const Frames8& f, int a, int b, const std::vector<float>& flow) {
  const int h = f.height, w = f.width;
  cv::Mat map_a(h, w, CV_32FC2), map_b(h, w, CV_32FC2);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const float u = flow[(static_cast<size_t>(y) * w + x) * 2], v = flow[(static_cast<size_t>(y) * w + x) * 2 + 1];
      map_a.at<cv::Vec2f>(y, x) = {x - 0.5f * u, y - 0.5f * v};
      map_b.at<cv::Vec2f>(y, x) = {x + 0.5f * u, y + 0.5f * v};
    }
  }
  cv::Mat img_a, img_b, warped_a, warped_b;
  cv::Mat(h, w, CV_8UC3, const_cast<uint8_t*>(f.rgb[static_cast<size_t>(a)].data()))
      .convertTo(img_a, CV_32FC3);
  cv::Mat(h, w, CV_8UC3, const_cast<uint8_t*>(f.rgb[static_cast<size_t>(b)].data()))
      .convertTo(img_b, CV_32FC3);
  cv::remap(img_a, warped_a, map_a, cv::noArray(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  cv::remap(img_b, warped_b, map_b, cv::noArray(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  const cv::Mat mid = 0.5f * warped_a + 0.5f * warped_b;
  std::vector<uint8_t> out(static_cast<size_t>(h) * w * 3);
  const auto* m = mid.ptr<float>();
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<uint8_t>(std::clamp(m[i], 0.0f, 255.0f));  // truncates
  return out;
}

// A gray frame padded to a multiple of 8 on each side by replication, split evenly (RAFT's
// InputPadder in its default 'sintel' mode, which VBench's flow scores run on).
std::vector<uint8_t> pad_to_8(const std::vector<uint8_t>& gray, int height, int width, int& padded_h,
                              int& padded_w) {
  padded_h = (height + 7) / 8 * 8;
  padded_w = (width + 7) / 8 * 8;
  const int ph = padded_h - height, pw = padded_w - width;
  cv::Mat in(height, width, CV_8UC1, const_cast<uint8_t*>(gray.data())), out;
  cv::copyMakeBorder(in, out, ph / 2, ph - ph / 2, pw / 2, pw - pw / 2, cv::BORDER_REPLICATE);
  return std::vector<uint8_t>(out.data, out.data + static_cast<size_t>(padded_h) * padded_w);
}
#endif

// VBench's min-max normalisation, kept within [0, 1] (a static clip's smoothness of 1.0 is above
// VBench's 0.9975 maximum).
double normalise(double x, double lo, double hi) { return std::clamp((x - lo) / (hi - lo), 0.0, 1.0); }

}  // namespace

Fidelity fidelity(const at::Tensor& video, const at::Tensor& reference) {
  check_video(video, "video");
  check_video(reference, "reference");
  if (video.sizes() != reference.sizes()) {
    throw std::invalid_argument("video " + c10::str(video.sizes()) + " and reference " + c10::str(reference.sizes()) +
                                " differ in shape");
  }
  if (video.size(1) < 11 || video.size(2) < 11) {
    throw std::invalid_argument("SSIM needs frames of at least 11x11 pixels, got " + std::to_string(video.size(1)) +
                                "x" + std::to_string(video.size(2)));
  }
  const auto x = video.to(at::kDouble), y = reference.to(video.device(), at::kDouble);
  const auto sq = (x - y).pow(2);
  const auto mse_f = sq.mean({1, 2, 3});
  const auto psnr_f = at::log10(1.0 / mse_f) * 10.0;  // 1 / 0 = inf: identical frames give +inf

  // SSIM on [F, 3, H, W], a separable Gaussian window applied as one depthwise convolution.
  const auto g1 = at::arange(11, x.options()).sub(5).pow(2).div(-2.0 * 1.5 * 1.5).exp();
  const auto g = (g1 / g1.sum()).unsqueeze(1).mm((g1 / g1.sum()).unsqueeze(0));
  const auto window = g.expand({3, 1, 11, 11}).contiguous();
  const auto a = x.permute({0, 3, 1, 2}).contiguous(), b = y.permute({0, 3, 1, 2}).contiguous();
  const std::vector<int64_t> ones{1, 1}, zeros{0, 0};  // stride and dilation 1, no padding: the valid region
  auto blur = [&](const at::Tensor& t) { return at::conv2d(t, window, c10::nullopt, ones, zeros, ones, 3); };
  const auto mu_a = blur(a), mu_b = blur(b);
  const auto var_a = blur(a * a) - mu_a * mu_a, var_b = blur(b * b) - mu_b * mu_b, cov = blur(a * b) - mu_a * mu_b;
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  const auto map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2));
  const auto ssim_f = map.mean({1, 2, 3});

  auto to_vec = [](const at::Tensor& t) {
    const auto c = t.to(at::kCPU).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  Fidelity r;
  r.mse_per_frame = to_vec(mse_f);
  r.psnr_per_frame = to_vec(psnr_f);
  r.ssim_per_frame = to_vec(ssim_f);
  r.mse = sq.mean().item<double>();
  r.psnr_video = r.mse == 0 ? std::numeric_limits<double>::infinity() : 10 * std::log10(1.0 / r.mse);
  r.psnr = std::accumulate(r.psnr_per_frame.begin(), r.psnr_per_frame.end(), 0.0) / static_cast<double>(r.psnr_per_frame.size());
  r.ssim = std::accumulate(r.ssim_per_frame.begin(), r.ssim_per_frame.end(), 0.0) / static_cast<double>(r.ssim_per_frame.size());
  return r;
}

bool has_optical_flow() { return ASTRAEA_HAS_OPENCV != 0; }

bool vbench_applies(int64_t frames, int64_t height, int64_t width) { return frames >= 3 && height >= 16 && width >= 16; }

std::vector<float> optical_flow(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, int height, int width) {
#if ASTRAEA_HAS_OPENCV
  cv::Mat ma(height, width, CV_8UC1, const_cast<uint8_t*>(a.data())), mb(height, width, CV_8UC1, const_cast<uint8_t*>(b.data()));
  cv::Mat flow;
  // Pyramid levels as deep as the frame allows; a 15-pixel window suits frames down to 32 pixels.
  const int levels = std::max(1, static_cast<int>(std::log2(std::min(height, width) / 8.0)));
  cv::calcOpticalFlowFarneback(ma, mb, flow, 0.5, levels, std::min(15, std::min(height, width) / 2 | 1), 3, 5, 1.1, 0);
  return std::vector<float>(reinterpret_cast<const float*>(flow.data),
                            reinterpret_cast<const float*>(flow.data) + static_cast<size_t>(height) * width * 2);
#else
  (void)a;
  (void)b;
  (void)height;
  (void)width;
  throw std::runtime_error("this build has no OpenCV: optical flow (dynamic degree, motion smoothness) is unavailable");
#endif
}

bool vbench_static(const std::vector<double>& scores, int64_t frames, int64_t height, int64_t width) {
  const double thres = 3.0 * static_cast<double>(std::min(height, width)) / 256.0;
  const int count_num = py_round(2.0 * static_cast<double>(frames) / 16.0);
  int count = 0;
  for (size_t i = 0; i + 2 < scores.size(); ++i) {
    if (scores[i] > thres) ++count;
    if (count > count_num) return false;
  }
  for (size_t i = scores.size() >= 2 ? scores.size() - 2 : 0; i < scores.size(); ++i) {
    if (scores[i] > thres * count_num * 2) return false;
  }
  return true;
}

VBenchProxy vbench_proxy(const at::Tensor& video, double fps, const SemanticCheck* semantic) {
  check_video(video, "video");
  if (!vbench_applies(video.size(0), video.size(1), video.size(2))) {
    throw std::invalid_argument("VBench-proxy needs at least 3 frames of 16x16 pixels, got " + c10::str(video.sizes()));
  }
  if (!(fps > 0)) throw std::invalid_argument("fps must be positive");
  const auto cpu = video.detach().to(at::kCPU, at::kFloat).contiguous();
  const Frames8 f = to_8bit(cpu);
  VBenchProxy r;
  const double scale = std::min(f.height, f.width) / 256.0;
  // Each frame pair's flow once: the static filter, dynamic degree and smoothness share pairs.
  std::map<std::pair<int, int>, std::vector<float>> flows;
  auto flow = [&](int a, int b) -> const std::vector<float>& {
    auto [it, fresh] = flows.try_emplace({a, b});
    if (fresh) it->second = optical_flow(f.gray[static_cast<size_t>(a)], f.gray[static_cast<size_t>(b)], f.height, f.width);
    return it->second;
  };
  // The static filter's and dynamic degree's scores: flow over frames padded to a multiple of 8, as
  // VBench's RAFT sees them, and the top share of every padded pixel's magnitude.
  std::map<std::tuple<int, int, double>, double> padded_scores;
  auto flow_score = [&](int a, int b, double share) {
    auto [it, fresh] = padded_scores.try_emplace({a, b, share});
    if (fresh) {
#if ASTRAEA_HAS_OPENCV
      int ph = 0, pw = 0;
      const auto ga = pad_to_8(f.gray[static_cast<size_t>(a)], f.height, f.width, ph, pw);
      const auto gb = pad_to_8(f.gray[static_cast<size_t>(b)], f.height, f.width, ph, pw);
      it->second = top_share_mean(magnitudes(optical_flow(ga, gb, ph, pw)), share);
#else
      it->second = top_share_mean(magnitudes(flow(a, b)), share);  // throws: no OpenCV, no flow
#endif
    }
    return it->second;
  };

  // Temporal flickering: consecutive frames' mean absolute difference, on 0-255 values.
  double mae = 0;
  for (int i = 0; i + 1 < f.frames; ++i) mae += mean_abs_diff(f.rgb[static_cast<size_t>(i)], f.rgb[static_cast<size_t>(i + 1)]);
  r.temporal_flickering = (255.0 - mae / (f.frames - 1)) / 255.0;

  // VBench's static filter: top 2% flow magnitudes of consecutive pairs, then first->last and back.
  {
    std::vector<double> s;
    for (int i = 0; i + 1 < f.frames; ++i) s.push_back(flow_score(i, i + 1, 0.02));
    s.push_back(flow_score(0, f.frames - 1, 0.02));
    s.push_back(flow_score(f.frames - 1, 0, 0.02));
    r.static_video = vbench_static(s, f.frames, f.height, f.width);
  }

  // Dynamic degree: frames sampled at 8 per second, top 5% flow magnitudes per pair.
  {
    const int interval = std::max(1, py_round(fps / 8.0));
    std::vector<int> idx;
    for (int i = 0; i < f.frames; i += interval) idx.push_back(i);
    // VBench's head (dynamic_degree.py, 2026-03) has no frame-rate factor here; one, max(1, 8 /
    // fps), was in it for ten days of July 2024 and is gone.
    const double thres = 6.0 * scale;
    const int count_num = py_round(4.0 * static_cast<double>(idx.size()) / 16.0);
    int count = 0;
    for (size_t i = 0; i + 1 < idx.size(); ++i) {
      r.flow_scores.push_back(flow_score(idx[i], idx[i + 1], 0.05));
      if (r.flow_scores.back() > thres) ++count;
      if (count >= count_num) r.dynamic = true;
    }
  }

  // Motion smoothness: odd frames predicted from their even neighbours, scored like flickering.
#if ASTRAEA_HAS_OPENCV
  {
    double err = 0;
    int n = 0;
    for (int i = 1; i + 1 < f.frames; i += 2, ++n) err += mean_abs_diff(interpolate_middle(f, i - 1, i + 1, flow(i - 1, i + 1)), f.rgb[static_cast<size_t>(i)]);
    r.motion_smoothness = (255.0 - err / n) / 255.0;
  }
#endif

  // VBench's quality score: the weighted mean of the min-max normalised dimensions.
  auto term = [](double x, const VBenchBound& b) { return b.weight * normalise(x, b.min, b.max); };
  r.quality_score =
      (term(r.temporal_flickering, kFlickeringBound) + term(r.motion_smoothness, kSmoothnessBound) +
       term(r.dynamic ? 1.0 : 0.0, kDynamicBound)) /
      (kFlickeringBound.weight + kSmoothnessBound.weight + kDynamicBound.weight);
  r.total = r.quality_score;
  if (semantic) {
    r.semantic = semantic->agreement(cpu.data_ptr<float>(), f.frames, f.height, f.width);
    double s = 0;
    for (const auto& [k, v] : r.semantic) s += v;  // each weighs 1, on [0, 1] already
    r.semantic_score = s / static_cast<double>(r.semantic.size());
    r.total = (4 * r.quality_score + *r.semantic_score) / 5;  // VBench: QUALITY_WEIGHT 4, SEMANTIC_WEIGHT 1
  }
  return r;
}

}  // namespace astraea::quality
