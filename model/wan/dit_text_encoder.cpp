// The tiny preset's own text encoder: word ids of the preset's vocabulary, one pre-norm
// transformer layer, under the "text_encoder." keys of its weights file.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "io/field_error.h"
#include "model/wan/dit.h"
#include "model/word_tokenizer.h"

namespace astraea {

at::Tensor WanDiT::encode_prompt(const std::string& prompt) const {
  const int64_t words = static_cast<int64_t>(word_ids(config_.vocabulary, prompt).size());
  return encode_prompts({prompt})[0].narrow(0, 0, std::min(words, config_.text_len));
}

at::Tensor WanDiT::encode_prompts(const std::vector<std::string>& prompts) const {
  TORCH_CHECK(has_text_encoder(), config_.name, " has no text encoder of its own");
  const int64_t b = static_cast<int64_t>(prompts.size()), len = config_.text_len, t = config_.text_dim;
  // Word ids, padded with 0, and which positions hold words.
  std::vector<int64_t> ids(static_cast<size_t>(b * len), 0);
  for (int64_t i = 0; i < b; ++i) {
    const auto words =
        word_ids(config_.vocabulary, prompts[static_cast<size_t>(i)]);  // throws naming an unknown word
    if (static_cast<int64_t>(words.size()) > len) {
      throw FieldError("prompt", "has " + std::to_string(words.size()) + " words; " + config_.name +
                                     " reads at most " + std::to_string(len));
    }
    std::copy(words.begin(), words.end(), ids.begin() + i * len);
  }
  auto host_ids = at::tensor(ids).view({b, len});
  // From page-locked memory the copy is asynchronous; from pageable memory it would wait for the
  // device to drain (a stall per training step).
  if (device().is_cuda()) host_ids = host_ids.pin_memory();
  const auto id = host_ids.to(device(), /*non_blocking=*/true);
  const auto valid = (id != 0).to(at::kFloat).unsqueeze(-1);  // [B, L, 1]
  auto w = [&](const std::string& k) { return encoder_.at("text_encoder." + k); };
  auto x = at::embedding(w("token_embedding.weight"), id) + w("position_embedding.weight");
  // One pre-norm transformer layer, so that a colour word can bind to its shape and motion.
  // Padding keys get a large negative score (not -inf: an empty prompt must stay finite).
  const int64_t heads = 2, hd = t / heads;
  auto h = at::layer_norm(x, {t}, w("block.norm1.weight"), w("block.norm1.bias"), 1e-6);
  auto qkv = at::linear(h, w("block.attn.qkv.weight"), w("block.attn.qkv.bias")).view({b, len, 3, heads, hd});
  auto q = qkv.select(2, 0).transpose(1, 2), k = qkv.select(2, 1).transpose(1, 2),
       v = qkv.select(2, 2).transpose(1, 2);
  auto scores = at::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));  // [B, H, L, L]
  scores = scores.masked_fill((id == 0).view({b, 1, 1, len}), -1e9);
  auto a = at::matmul(at::softmax(scores, -1), v).transpose(1, 2).reshape({b, len, t});
  x = x + at::linear(a, w("block.attn.o.weight"), w("block.attn.o.bias"));
  h = at::layer_norm(x, {t}, w("block.norm2.weight"), w("block.norm2.bias"), 1e-6);
  x = x + at::linear(at::gelu(at::linear(h, w("block.ffn.0.weight"), w("block.ffn.0.bias")), "tanh"),
                     w("block.ffn.2.weight"), w("block.ffn.2.bias"));
  return at::layer_norm(x, {t}, w("norm.weight"), w("norm.bias"), 1e-6) * valid;
}

}  // namespace astraea
