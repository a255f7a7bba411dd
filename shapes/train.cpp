#include "shapes/train.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <torch/types.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <tuple>

#include "engine/generate.h"
#include "io/atomic_file.h"
#include "io/field_error.h"
#include "model/denoiser.h"
#include "model/torch_compat.h"
#include "shapes/shapes_world.h"

namespace astraea {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

uint64_t mix(uint64_t a,
             uint64_t b) {  // splitmix64 of a combination: independent streams per (seed, step, item)
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Batch {
  at::Tensor x0;     // [B, 3, F, H, W] in [-1, 1], CPU
  at::Tensor noise;  // like x0, standard normal
  at::Tensor sigma;  // [B] noise levels: logit-normal, then shifted as the sampler shifts them
  std::vector<std::string> prompts;
  std::vector<std::string> reversed;  // the time-reversed prompt where an object moves, else ""
};

// The clips and noise of one step: a function of (seeds, step) alone, so a resumed run sees the
// same data. Built on a worker thread while the device trains on the previous batch; the noise is
// drawn here too, clip by clip in parallel (drawing it in one call on the training thread cost
// about as much as the step itself). `pinned` page-locks the tensors for asynchronous copies.
Batch make_batch(const TrainSize& size, uint64_t data_seed, uint64_t noise_seed, int64_t step,
                 double null_prompt_prob, double noise_shift, bool pinned) {
  Batch b;
  const auto options = at::TensorOptions().pinned_memory(pinned);
  b.x0 = at::empty({size.batch, 3, size.frames, size.height, size.width}, options);
  b.noise = at::empty(b.x0.sizes(), options);
  b.sigma = at::empty({size.batch}, options);
  b.prompts.resize(static_cast<size_t>(size.batch));
  b.reversed.resize(static_cast<size_t>(size.batch));
  at::parallel_for(0, size.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(
          mix(mix(noise_seed, static_cast<uint64_t>(step)), static_cast<uint64_t>(i)));
      b.noise[i].normal_(0.0, 1.0, gen);
      // The sampler spends half its steps above sigma 0.75 with shift 3, where a clip's layout and
      // motion are decided; plain logit-normal levels put 13% of the training there, shifted 50%.
      const auto u = at::sigmoid(at::randn({}, gen));
      b.sigma[i].copy_(noise_shift * u / (1.0 + (noise_shift - 1.0) * u));
      std::mt19937_64 rng(mix(mix(data_seed, static_cast<uint64_t>(step)), static_cast<uint64_t>(i)));
      const auto prompt = shapes::random_prompt(rng);
      const auto clip = shapes::layout_clip(prompt, rng(), static_cast<int>(size.frames),
                                            static_cast<int>(size.height), static_cast<int>(size.width));
      auto rgb = shapes::render_clip(clip);
      auto t = at::from_blob(rgb.data(), {size.frames, size.height, size.width, 3});
      b.x0[i].copy_(t.permute({3, 0, 1, 2}).mul(2.0).sub(1.0));
      const bool drop = std::uniform_real_distribution<double>(0, 1)(rng) < null_prompt_prob;
      b.prompts[static_cast<size_t>(i)] = drop ? "" : shapes::to_text(prompt);
      const auto reversed = shapes::time_reversed(prompt);
      if (!drop && !(reversed == prompt)) b.reversed[static_cast<size_t>(i)] = shapes::to_text(reversed);
    }
  });
  return b;
}

// The rows of BATCH that the direction contrast uses (an object moves, the prompt was kept, the
// noise level is at least MIN_SIGMA) and their time-reversed prompts.
std::pair<std::vector<int64_t>, std::vector<std::string>> contrast_rows(const Batch& batch,
                                                                        double min_sigma) {
  std::vector<int64_t> rows;
  std::vector<std::string> prompts;
  const auto sigma = batch.sigma.accessor<float, 1>();
  for (int64_t i = 0; i < batch.sigma.size(0); ++i) {
    const auto& reversed = batch.reversed[static_cast<size_t>(i)];
    if (!reversed.empty() && sigma[i] >= min_sigma) rows.push_back(i), prompts.push_back(reversed);
  }
  return {rows, prompts};
}

}  // namespace

Objective training_objective(const Denoiser& model, const at::Tensor& xt, const at::Tensor& sigma,
                             const at::Tensor& target, const std::vector<std::string>& prompts,
                             const std::vector<int64_t>& contrast_rows,
                             const std::vector<std::string>& reversed_prompts, double weight, double margin) {
  if (contrast_rows.size() != reversed_prompts.size())
    throw std::invalid_argument("training_objective: one reversed prompt per contrast row");
  const int64_t bsz = xt.size(0);
  if (weight <= 0 || contrast_rows.empty()) {
    const auto pred =
        model.forward_batch(xt, sigma * 1000.0, model.embed_context(model.encode_prompts(prompts)));
    auto loss = at::mse_loss(pred, target);
    return {loss, loss};
  }
  // One model call for the batch and its reversed-prompt copies: at the tiny model's size a step is
  // bound by launches, and a second call had taken the step from 82 to 156 ms on an H200.
  const auto idx = at::tensor(contrast_rows).to(xt.device());
  std::vector<std::string> all_prompts = prompts;
  all_prompts.insert(all_prompts.end(), reversed_prompts.begin(), reversed_prompts.end());
  const auto pred_all = model.forward_batch(at::cat({xt, xt.index_select(0, idx)}),
                                            at::cat({sigma, sigma.index_select(0, idx)}) * 1000.0,
                                            model.embed_context(model.encode_prompts(all_prompts)));
  const auto pred = pred_all.narrow(0, 0, bsz);
  auto loss = at::mse_loss(pred, target);
  const auto t = target.index_select(0, idx);
  const auto per_clip = [](const at::Tensor& e) { return e.pow(2).flatten(1).mean(1); };
  const auto own = per_clip(pred.index_select(0, idx) - t);
  const auto other = per_clip(pred_all.narrow(0, bsz, idx.size(0)) - t);
  const auto hinge = at::relu(margin * own.detach() - (other - own));
  return {loss, loss + weight * hinge.mean()};
}

namespace {

// Scales the gradients to a total L2 norm of at most MAX_NORM. Unlike torch's clip_grad_norm_, it
// never reads the norm back, so the host does not wait for the device every step.
void clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> norms;
  for (const auto& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().norm());
  }
  if (norms.empty()) return;
  const auto coef = at::clamp_max(max_norm / (at::stack(norms).norm() + 1e-6), 1.0);
  for (const auto& p : params) {
    if (p.grad().defined()) p.mutable_grad().mul_(coef);
  }
}

void write_json_atomically(const fs::path& path, const nlohmann::json& j) {
  const std::string error = write_file_atomically(path.string(), j.dump(2) + "\n");
  if (!error.empty()) throw std::runtime_error(path.string() + ": " + error);
}

// Weights under Wan keys with `values` (one per parameter, in parameters() order) swapped in.
Weights state_with(Denoiser& model, const std::vector<at::Tensor>& values) {
  at::NoGradGuard no_grad;
  auto params = model.parameters();
  std::vector<at::Tensor> saved;
  for (size_t i = 0; i < params.size(); ++i) {
    saved.push_back(params[i].clone());
    params[i].copy_(values[i]);
  }
  Weights out;
  for (const auto& [k, v] : model.state_dict()) out[k] = v.detach().to(at::kCPU, at::kFloat).clone();
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
  return out;
}

}  // namespace

std::vector<TrainSize> parse_train_sizes(const std::string& text, const std::string& flag) {
  std::vector<TrainSize> sizes;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, end - start);
    const size_t colon = item.find(':');
    char tail;
    long long b = 0;
    bool ok = colon != std::string::npos && std::sscanf(item.c_str() + colon + 1, "%lld%c", &b, &tail) == 1 &&
              b >= 1;
    VideoSize size;
    try {
      if (ok) size = parse_video_size(item.substr(0, colon), flag);
    } catch (const std::invalid_argument&) {
      ok = false;  // named below, with the batch
    }
    if (!ok)
      throw std::invalid_argument(flag + " '" + item +
                                  "' is not FRAMESxHEIGHTxWIDTH:BATCH (e.g. 8x32x48:32)");
    TrainSize s;
    s.frames = size.frames;
    s.height = size.height;
    s.width = size.width;
    s.batch = b;
    sizes.push_back(s);
    start = end + 1;
  }
  return sizes;
}

std::vector<double> reversed_prompt_gap(const Denoiser& model, const DirectionProbe& probe) {
  at::NoGradGuard no_grad;
  const auto device = model.device();
  std::mt19937_64 rng(probe.seed);
  std::vector<double> gap(probe.sigmas.size(), 0.0);
  for (int64_t clip = 0; clip < probe.clips;) {
    const shapes::Prompt prompt = shapes::random_prompt(rng);
    const uint64_t seed = rng();
    const shapes::Prompt reversed = shapes::time_reversed(prompt);
    if (reversed == prompt) continue;  // nothing moves: no direction to tell
    auto rgb = shapes::render_clip(shapes::layout_clip(prompt, seed, static_cast<int>(probe.frames),
                                                       static_cast<int>(probe.height),
                                                       static_cast<int>(probe.width)));
    const auto x0 = at::from_blob(rgb.data(), {probe.frames, probe.height, probe.width, 3})
                        .permute({3, 0, 1, 2})
                        .mul(2.0)
                        .sub(1.0)
                        .contiguous()
                        .to(device);
    const auto noise = at::randn(x0.sizes(), at::make_generator<at::CPUGeneratorImpl>(seed)).to(device);
    const auto own = model.embed_context(model.encode_prompt(shapes::to_text(prompt)));
    const auto other = model.embed_context(model.encode_prompt(shapes::to_text(reversed)));
    for (size_t i = 0; i < probe.sigmas.size(); ++i) {
      const double sigma = probe.sigmas[i];
      const auto xt = (1 - sigma) * x0 + sigma * noise;
      auto loss = [&](const at::Tensor& context) {
        return at::mse_loss(model.forward(xt, sigma * 1000.0, context), noise - x0).item<double>();
      };
      const double right = loss(own);
      gap[i] += (loss(other) - right) / right;
    }
    ++clip;
  }
  for (double& g : gap) g /= static_cast<double>(probe.clips);
  return gap;
}

double loss_tail_mean(const std::vector<std::pair<int64_t, double>>& curve, int64_t steps) {
  double sum = 0;
  int64_t counted = 0;
  for (size_t i = curve.size(); i-- > 0 && counted < steps;) {
    const int64_t n = std::min(curve[i].first - (i > 0 ? curve[i - 1].first : 0), steps - counted);
    sum += curve[i].second * static_cast<double>(n);
    counted += n;
  }
  return counted > 0 ? sum / static_cast<double>(counted) : 0.0;
}

TrainResult train(const TrainOptions& o, const std::function<void(const TrainProgress&)>& on_progress,
                  int64_t log_every) {
  ModelConfig config = model_preset(o.model);
  if (o.position_octaves >= 0) config.position_octaves = o.position_octaves;
  const fs::path dir = o.checkpoint_dir;
  const bool resume = !o.checkpoint_dir.empty() && fs::exists(dir / "state.json");
  // Weights to start from decide whether the model has position features; a flag must agree with them.
  const std::string start = resume ? (dir / "weights.safetensors").string() : o.init;
  if (!start.empty()) {
    const int64_t in_file = config_for_weights(config, start).position_octaves;
    if (o.position_octaves >= 0 && o.position_octaves != in_file) {
      throw FieldError("position_octaves", std::to_string(o.position_octaves) + " does not match " + start +
                                               ", which has " + std::to_string(in_file));
    }
    config.position_octaves = in_file;
  }
  if (config.text_vocab == 0) {
    throw FieldError("model", o.model + " has no text encoder of its own to train on the shapes world");
  }
  if (o.steps < 1) throw FieldError("steps", "must be at least 1");
  if (o.sizes.empty()) throw FieldError("sizes", "must name at least one clip size");
  for (const auto& s : o.sizes) video_shape(config, s.frames, s.height, s.width);  // throws naming the misfit
  const auto device = parse_device(o.device);
  const auto compute = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (device.is_cuda()) compat::allow_tf32(true);

  TrainResult result;
  result.device_name = compat::device_name(device);
  result.position_octaves = config.position_octaves;
  result.noise_shift = o.noise_shift > 0 ? o.noise_shift : config.default_shift;
  nlohmann::json state;
  if (resume) state = nlohmann::json::parse(std::ifstream(dir / "state.json"));

  // Master weights in float32 on the device; matrix products run in `compute`.
  const auto owned =
      make_denoiser(config,
                    resume ? load_weights((dir / "weights.safetensors").string(), config, device, at::kFloat)
                    : o.init.empty() ? random_weights(config, o.seed, device, at::kFloat)
                                     : load_weights(o.init, config, device, at::kFloat),
                    compute);
  Denoiser& model = *owned;
  auto params = model.parameters();
  for (auto& p : params) p.requires_grad_(true);
  torch::optim::AdamW optimizer(
      params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay).betas({0.9, 0.99}));
  std::vector<at::Tensor> ema;
  {
    at::NoGradGuard no_grad;
    if (o.ema > 0 && resume && fs::exists(dir / "ema.safetensors")) {
      ema = make_denoiser(
                config, load_weights((dir / "ema.safetensors").string(), config, device, at::kFloat), compute)
                ->parameters();
    } else if (o.ema > 0) {
      for (const auto& p : params) ema.push_back(p.detach().clone());
    }
  }
  int64_t step = 0;
  double elapsed_before = 0;
  if (resume) {
    torch::load(optimizer, (dir / "optimizer.pt").string());
    step = state.at("step").get<int64_t>();
    elapsed_before = state.at("elapsed_s").get<double>();
    for (const auto& p : state.at("loss_curve"))
      result.loss_curve.emplace_back(p[0].get<int64_t>(), p[1].get<double>());
    result.resumed_at = step;
  }

  auto save_checkpoint = [&](double elapsed) {
    if (o.checkpoint_dir.empty()) return;
    fs::create_directories(dir);
    {
      at::NoGradGuard no_grad;
      Weights raw;
      for (const auto& [k, v] : model.state_dict()) raw[k] = v.detach();
      save_weights((dir / "weights.safetensors").string(), raw);
      if (!ema.empty()) save_weights((dir / "ema.safetensors").string(), state_with(model, ema));
    }
    torch::save(optimizer, (dir / "optimizer.pt.tmp").string());
    fs::rename(dir / "optimizer.pt.tmp", dir / "optimizer.pt");
    nlohmann::json s{{"step", step},     {"elapsed_s", elapsed}, {"loss_curve", result.loss_curve},
                     {"model", o.model}, {"seed", o.seed},       {"data_seed", o.data_seed},
                     {"steps", o.steps}};
    write_json_atomically(dir / "state.json", s);  // written last: it marks the checkpoint complete
  };

  auto batch_for = [&](int64_t s) {
    const auto& size = o.sizes[static_cast<size_t>(s) % o.sizes.size()];
    return std::async(std::launch::async, make_batch, size, o.data_seed, o.seed, s, o.null_prompt_prob,
                      result.noise_shift, device.is_cuda());
  };
  const auto t0 = Clock::now();
  auto elapsed = [&] { return elapsed_before + std::chrono::duration<double>(Clock::now() - t0).count(); };
  auto fraction = [&](int64_t s) {
    const double by_steps = static_cast<double>(s) / static_cast<double>(o.steps);
    return o.time_limit_s > 0 ? std::max(by_steps, elapsed() / o.time_limit_s) : by_steps;
  };
  auto next = batch_for(step);
  at::Tensor loss_sum = at::zeros({}, at::TensorOptions().device(device));
  int64_t loss_count = 0;
  const int64_t stop_at = o.stop_after > 0 ? step + o.stop_after : -1;
  // One step of every logging interval is timed phase by phase, waiting for the device at each
  // phase's end; the other steps run unsynchronised.
  const char* const phases[] = {"data", "forward", "backward", "optimizer", "ema"};
  double phase_sum[5] = {};
  int64_t timed_steps = 0;
  while (fraction(step) < 1.0 && step != stop_at) {
    const bool timed = step % log_every == log_every / 2;
    auto phase_start = Clock::now();
    auto end_phase = [&](int i) {
      if (!timed) return;
      compat::synchronize(device);
      const auto now = Clock::now();
      phase_sum[i] += std::chrono::duration<double, std::milli>(now - phase_start).count();
      phase_start = now;
    };
    if (timed) compat::synchronize(device), phase_start = Clock::now();
    const double f = fraction(step);
    const double warm =
        std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(std::max<int64_t>(1, o.warmup)));
    const double lr = o.lr * warm * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * f)));
    for (auto& group : optimizer.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

    Batch batch = next.get();
    next = batch_for(step + 1);
    const int64_t bsz = batch.x0.size(0);
    auto sigma = batch.sigma.to(device, /*non_blocking=*/true);
    auto noise = batch.noise.to(device, /*non_blocking=*/true);
    auto x0 = batch.x0.to(device, /*non_blocking=*/true);
    auto s5 = sigma.view({bsz, 1, 1, 1, 1});
    auto xt = (1 - s5) * x0 + s5 * noise;
    end_phase(0);

    std::vector<int64_t> rows;
    std::vector<std::string> reversed;
    if (o.direction_contrast > 0) std::tie(rows, reversed) = contrast_rows(batch, o.contrast_min_sigma);
    auto [loss, objective] = training_objective(model, xt, sigma, noise - x0, batch.prompts, rows, reversed,
                                                o.direction_contrast, o.contrast_margin);
    end_phase(1);
    optimizer.zero_grad();
    objective.backward();
    end_phase(2);
    if (o.grad_clip > 0) clip_grad_norm(params, o.grad_clip);
    optimizer.step();
    end_phase(3);
    if (!ema.empty()) {
      at::NoGradGuard no_grad;
      const double d =
          std::min(o.ema, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
      for (size_t i = 0; i < ema.size(); ++i) ema[i].mul_(d).add_(params[i].detach(), 1 - d);
    }
    end_phase(4);
    timed_steps += timed;
    loss_sum += loss.detach();
    ++loss_count;
    ++step;

    const bool done = fraction(step) >= 1.0 || step == stop_at;
    if (step % log_every == 0 || done) {
      const double mean = loss_sum.item<double>() / static_cast<double>(loss_count);
      result.loss_curve.emplace_back(step, mean);
      loss_sum.zero_();
      loss_count = 0;
      if (on_progress) on_progress({step, o.steps, fraction(step), mean, lr, elapsed()});
    }
    if (step % o.checkpoint_every == 0 || done) save_checkpoint(elapsed());
  }
  next.wait();
  if (timed_steps > 0) {
    for (int i = 0; i < 5; ++i)
      result.step_ms.emplace_back(phases[i], phase_sum[i] / static_cast<double>(timed_steps));
  }
  result.steps = step;
  result.wall_s = elapsed();
  result.weights = ema.empty() ? state_with(model, params) : state_with(model, ema);
  return result;
}

}  // namespace astraea
