#include "model/text_context.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <stdexcept>

#include "io/field_error.h"
#include "io/fnv1a.h"
#include "io/safetensors.h"

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

TextContexts text_contexts(const Denoiser& model, const std::string& prompt,
                           const std::string& context_file) {
  const auto& config = model.config();
  TextContexts r;
  if (model.has_text_encoder()) {
    if (!context_file.empty()) {
      throw FieldError({"context", "prompt"}, "{0}: " + config.name + " encodes its own prompts; pass {1}");
    }
    at::NoGradGuard no_grad;
    r.cond = model.encode_prompt(prompt).cpu();
    r.uncond = model.encode_prompt("").cpu();
    r.source = config.name + "'s own text encoder";
    return r;
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
