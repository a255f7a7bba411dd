#include "engine/generate.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>

#include "engine/guided_step.h"
#include "engine/methods.h"
#include "engine/schedule.h"
#include "io/field_error.h"
#include "model/denoiser.h"
#include "model/pth.h"
#include "model/ranges.h"
#include "model/sampler.h"
#include "model/text_context.h"
#include "model/torch_compat.h"
#include "model/weights.h"

namespace astraea {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --weights names a folder: a Wan 2.1 release, whose umT5 and VAE come with it.
bool is_release_folder(const GenerateOptions& o) {
  std::error_code ec;
  return o.weights != "random" && !o.weights.empty() && std::filesystem::is_directory(o.weights, ec);
}

std::string find_shipped(const ModelConfig& c) {
  return c.shipped_weights.empty() ? "" : shipped_file(c.shipped_weights);
}

}  // namespace

std::string shipped_file(const std::string& relative) {
  namespace fs = std::filesystem;
  std::vector<fs::path> roots{fs::current_path()};
  if (const char* src = std::getenv("ASTRAEA_SOURCE_DIR")) roots.emplace_back(src);
#ifdef ASTRAEA_SOURCE_DIR_DEFAULT
  roots.emplace_back(ASTRAEA_SOURCE_DIR_DEFAULT);
#endif
  for (const auto& r : roots) {
    if (fs::exists(r / relative)) return (r / relative).string();
  }
  return {};
}

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::kCPU;
  if (name.rfind("cuda", 0) != 0) {
    throw FieldError("device", "'" + name + "' is not cpu, cuda or cuda:N");
  }
  int index = 0;
  if (name.size() > 4) {
    if (name[4] != ':' || name.size() == 5 || name.find_first_not_of("0123456789", 5) != std::string::npos) {
      throw FieldError("device", "'" + name + "' is not cpu, cuda or cuda:N");
    }
    index = std::stoi(name.substr(5));
  }
  if (!compat::cuda_available()) {
    throw FieldError(std::vector<std::string>{"device"},
                     "{0} " + name + ": no CUDA device (or this LibTorch has no CUDA); use {0} cpu");
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

at::ScalarType parse_dtype(const std::string& name, const at::Device& device) {
  if (name.empty()) return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (name == "fp32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  throw FieldError("dtype", "'" + name + "' is not fp32 or bf16");
}

std::string weights_file(const GenerateOptions& o) {
  if (o.weights == "random") return {};
  return o.weights.empty() ? find_shipped(model_preset(o.model)) : o.weights;
}

std::shared_ptr<const Denoiser> load_model(const GenerateOptions& o) {
  ModelConfig c = model_preset(o.model);
  const auto device = parse_device(o.device);
  const auto dtype = parse_dtype(o.dtype, device);
  Weights weights;
  if (o.weights == "random") {
    weights = random_weights(c, o.weights_seed, device, dtype);
  } else {
    const std::string path = weights_file(o);
    if (path.empty()) {
      throw FieldError({"model", "weights"},
                       "{0} " + c.name + " has no shipped weights in this checkout (" +
                           (c.shipped_weights.empty() ? std::string("none published") : c.shipped_weights) +
                           "); pass {1} FILE or {1} random");
    }
    c = config_for_weights(c, path);
    weights = load_weights(path, c, device, dtype);
  }
  return make_denoiser(c, std::move(weights), dtype);
}

std::shared_ptr<const WanVae> load_vae(const GenerateOptions& o) {
  namespace fs = std::filesystem;
  const auto& c = model_preset(o.model);
  const bool release = is_release_folder(o);
  const std::string vae = !o.vae.empty() ? o.vae : release ? (fs::path(o.weights) / "Wan2.1_VAE.pth").string() : "none";
  if (vae == "none") return nullptr;
  if (c.pixel_space)
    throw FieldError(std::vector<std::string>{"vae"}, "{0}: " + c.name + " draws pixels itself and has no VAE; leave {0} out");
  const auto device = parse_device(o.device);
  if (vae == "random") {
    const WanVaeConfig config;
    return std::make_shared<WanVae>(config, random_wan_vae_weights(config, o.weights_seed), device, "random");
  }
  std::error_code ec;
  if (!fs::is_regular_file(vae, ec)) {
    throw std::runtime_error(vae + (o.vae.empty() ? ": missing from the Wan 2.1 release folder (the VAE; or pass "
                                                    "--vae none for latents)"
                                                  : ": no such file (--vae)"));
  }
  const auto weights = read_pth(vae);
  return std::make_shared<WanVae>(wan_vae_config_of(weights, vae), weights, device, vae);
}

GenerateResult generate(const GenerateOptions& o) {
  GenerateResult r;
  r.config = model_preset(o.model);
  const auto& c = r.config;
  r.shape = video_shape(c, o.frames ? o.frames : c.default_frames, o.height ? o.height : c.default_height,
                        o.width ? o.width : c.default_width);
  r.steps = o.steps ? o.steps : c.default_steps;
  r.guidance = o.guidance >= 0 ? o.guidance : c.default_guidance;
  r.shift = o.shift > 0 ? o.shift : c.default_shift;
  r.sampler = o.sampler.empty() ? c.default_sampler : o.sampler;
  const auto plan = sampling_plan(r.sampler, r.steps, r.shift);  // names a bad --sampler before loading
  if (o.schedule) validate_schedule(*o.schedule, "--schedule", c.name, r.steps);  // before any loading
  if (o.method) {
    const auto why = o.method->can_run(c.name, r.steps);
    if (!why.empty()) throw std::invalid_argument("method " + o.method->name() + ": " + why);
  }
  const auto device = parse_device(o.device);
  set_default_gpu_attention(o.attention);
  if (const auto why = vae_tiling_error(o.vae_tiling); !why.empty())
    throw FieldError(std::vector<std::string>{"vae-tile"}, "{0}: " + why);

  const auto t_load = std::chrono::steady_clock::now();
  std::shared_ptr<const Denoiser> loaded = o.loaded;
  if (loaded) {
    if (loaded->config().name != c.name || loaded->device() != device) {
      throw FieldError(std::vector<std::string>{"model"},
                       "generate: the loaded model is " + loaded->config().name + " on " +
                           loaded->device().str() + ", not {0} " + c.name + " on " + device.str());
    }
  } else {
    loaded = load_model(o);
  }
  // What `o.weights` named, whether loaded here or by the caller (the same options load it).
  r.weights_source =
      o.weights == "random" ? "random (seed " + std::to_string(o.weights_seed) + ")" : weights_file(o);
  const Denoiser& model = *loaded;
  // The decoder before the text and sampling, so that a missing or bad file fails before them.
  const auto vae = o.loaded_vae ? o.loaded_vae : load_vae(o);
  TextOptions text_options;
  text_options.context_file = o.context_file;
  if (is_release_folder(o)) text_options.release_dir = o.weights;  // a Wan 2.1 release folder: its umT5 encodes the prompts
  text_options.negative_prompt = o.negative_prompt;
  text_options.device = o.text_device.empty() ? device.str() : parse_device(o.text_device).str();
  const auto t_text = std::chrono::steady_clock::now();
  const at::Device text_device(text_options.device);
  compat::reset_peak_device_bytes(text_device);
  auto text = text_contexts(model, o.prompt, text_options);
  r.text_seconds = seconds_since(t_text);
  r.text_peak_bytes = compat::peak_device_bytes(text_device);
  r.text_source = text.source;
  r.load_seconds = seconds_since(t_load);

  at::Tensor x;
  {  // Sampling; its state (the method's caches, the contexts) is freed before decoding.
  const auto cond = model.embed_context(text.cond.to(device, model.dtype()));
  const auto uncond = model.embed_context(text.uncond.to(device, model.dtype()));
  // Noise is drawn on the CPU so that a seed gives the same start on every device.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto noise = at::randn({c.in_channels, r.shape.latent_f, r.shape.latent_h, r.shape.latent_w}, gen);
  // The method: --method, else ASTRAEA with the schedule (--budget, --schedule), else dense.
  const auto method = o.method     ? o.method
                      : o.schedule ? engine::make_astraea(*o.schedule)
                                   : engine::make_method("dense");
  r.method = method->name();
  r.method_params = method->params();
  engine::GuidedStep guided_step(model, method, r.guidance, o.cfg_group);
  const auto t_sample = std::chrono::steady_clock::now();
  compat::reset_peak_device_bytes(device);
  x = sample(
      plan, noise.to(device),
      [&](const at::Tensor& xt, double, int64_t step) {
        const auto range = ScopedRange::step(step);
        return guided_step(xt, {step, r.steps, plan.timesteps[step]}, cond, uncond);
      },
      o.on_step);
  r.model_calls = guided_step.model_calls();
  r.skipped_steps = guided_step.skipped_steps();
  r.step_actions = guided_step.step_actions();
  r.method_report = guided_step.report();
  // Against a dense run of every step (skipped steps count as computing nothing).
  const double dense =
      static_cast<double>(r.steps * (guided_step.guided() ? 2 : 1) * c.layers * r.shape.tokens());
  r.token_share = static_cast<double>(guided_step.computed_tokens()) / dense;
  r.cache_bytes = guided_step.cache_bytes();
  compat::synchronize(device);
  r.sample_seconds = seconds_since(t_sample);
  r.sample_peak_bytes = compat::peak_device_bytes(device);
  }

  x = x.to(at::kCPU);
  if (c.pixel_space) {
    // RGB in [-1, 1], [3, F, H, W] -> [F, H, W, 3] in [0, 1].
    r.video = x.add(1.0).mul_(0.5).clamp_(0.0, 1.0).permute({1, 2, 3, 0}).contiguous();
    return r;
  }
  r.latents = x.contiguous();
  if (vae) {
    const auto t_decode = std::chrono::steady_clock::now();
    compat::reset_peak_device_bytes(device);
    r.video = vae->decode(r.latents, o.vae_tiling).add_(1.0).mul_(0.5).permute({1, 2, 3, 0}).contiguous();
    r.decode_seconds = seconds_since(t_decode);
    r.decode_peak_bytes = compat::peak_device_bytes(device);
    r.vae_source = o.loaded_vae ? "loaded" : o.vae.empty() ? "the release's Wan2.1_VAE.pth" : o.vae;
  }
  return r;
}

}  // namespace astraea
