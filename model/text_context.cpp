#include "model/text_context.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <stdexcept>

#include "io/field_error.h"
#include "io/fnv1a.h"
#include "io/safetensors.h"
#include "model/pth.h"
#include "model/text/umt5.h"
#include "model/text/umt5_tokenizer.h"

namespace astraea {
namespace {

at::Tensor read_context(const SafetensorsFile& file, const char* key, int64_t text_dim) {
  const TensorView* t = file.find(key);
  if (!t) return {};
  if (t->shape.size() != 2 || t->shape[1] != text_dim) {
    throw std::runtime_error(file.path() + ": tensor '" + key + "' must be [tokens, " +
                             std::to_string(text_dim) + "]");
  }
  at::ScalarType st;
  switch (t->dtype) {
    case DType::F32:
      st = at::kFloat;
      break;
    case DType::BF16:
      st = at::kBFloat16;
      break;
    case DType::F16:
      st = at::kHalf;
      break;
    default:
      throw std::runtime_error(file.path() + ": tensor '" + key + "' must be F32, BF16 or F16");
  }
  return at::from_blob(const_cast<std::byte*>(t->data), t->shape, at::TensorOptions().dtype(st))
      .to(at::kFloat);  // copies out of the mapping
}

}  // namespace

const char* const kWanNegativePrompt =
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG"
    "压缩残留，丑陋的，"
    "残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的"
    "画面，杂乱的背景，"
    "三条腿，背景人很多，倒着走";

ReleaseTextFiles release_text_files(const std::string& dir) {
  const std::filesystem::path d(dir);
  ReleaseTextFiles f{(d / "models_t5_umt5-xxl-enc-bf16.pth").string(),
                     (d / "google/umt5-xxl/spiece.model").string()};
  for (const auto* file : {&f.weights, &f.tokenizer}) {
    if (!std::filesystem::is_regular_file(*file))
      throw std::runtime_error(*file + ": missing from the Wan 2.1 release folder (umT5's " +
                               (file == &f.weights ? "weights" : "tokenizer") + "; or pass --context)");
  }
  return f;
}

TextContexts text_contexts(const Denoiser& model, const std::string& prompt, const TextOptions& o) {
  const auto& config = model.config();
  const auto& context_file = o.context_file;
  TextContexts r;
  if (model.has_text_encoder()) {
    if (!context_file.empty()) {
      throw FieldError({"context", "prompt"}, "{0}: " + config.name + " encodes its own prompts; pass {1}");
    }
    at::NoGradGuard no_grad;
    r.cond = model.encode_prompt(prompt).cpu();
    r.uncond = model.encode_prompt(o.negative_prompt.value_or("")).cpu();
    r.source = config.name + "'s own text encoder";
    return r;
  }
  if (context_file.empty() && !o.release_dir.empty()) {
    // umT5 from the release, on o.device, alive only while it encodes the two prompts.
    const auto files = release_text_files(o.release_dir);
    const Umt5Tokenizer tokenizer(files.tokenizer);
    const at::Device device(o.device);
    const auto weights = read_pth(files.weights);
    const auto c = umt5_config_of(weights, files.weights, config.text_len);
    if (c.dim != config.text_dim)
      throw std::runtime_error(files.weights + ": umT5 of width " + std::to_string(c.dim) + ", " +
                               config.name + " reads text of width " + std::to_string(config.text_dim));
    const Umt5Encoder encoder(c, weights, device, device.is_cuda() ? at::kBFloat16 : at::kFloat,
                              files.weights);
    r.cond = encoder.encode(tokenizer.encode(prompt, c.text_len));
    r.uncond = encoder.encode(tokenizer.encode(o.negative_prompt.value_or(kWanNegativePrompt), c.text_len));
    r.source = "umT5-XXL from " + files.weights + " on " + device.str();
    return r;
  }
  if (o.negative_prompt) {
    throw FieldError({"negative-prompt"},
                     "{0}: " + config.name +
                         " has no text encoder here to read it (pass --weights RELEASE_FOLDER, or "
                         "a negative_context in --context)");
  }
  if (!context_file.empty()) {
    const auto file = SafetensorsFile::open(context_file);
    r.cond = read_context(file, "context", config.text_dim);
    if (!r.cond.defined()) throw std::runtime_error(context_file + ": no tensor 'context'");
    r.uncond = read_context(file, "negative_context", config.text_dim);
    if (!r.uncond.defined()) r.uncond = at::zeros({0, config.text_dim});
    r.source = "precomputed text-encoder output from " + context_file;
  } else {
    // No text encoder here: a random context of Wan's typical prompt length, seeded by the prompt.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(fnv1a(prompt.data(), prompt.size()));
    r.cond = at::randn({std::min<int64_t>(config.text_len, 128), config.text_dim}, gen) * 0.1;
    r.uncond = at::randn({std::min<int64_t>(config.text_len, 16), config.text_dim}, gen) * 0.1;
    r.source = "random text context (seeded by the prompt; no text encoder)";
  }
  for (const auto* t : {&r.cond, &r.uncond}) {
    if (t->size(0) > config.text_len) {
      throw std::runtime_error(context_file + ": context has " + std::to_string(t->size(0)) +
                               " tokens, more than " + config.name + "'s " + std::to_string(config.text_len));
    }
  }
  return r;
}

}  // namespace astraea
