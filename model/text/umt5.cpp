#include "model/text/umt5.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/StringUtil.h>

#include <cmath>
#include <set>
#include <stdexcept>

#include "model/weights.h"

namespace astraea {
namespace {

// T5LayerNorm: x / rms(x) in float32, cast to the weight's dtype, times the weight.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) {
  const auto xf = x.to(at::kFloat);
  auto y = xf * at::rsqrt(xf.pow(2).mean(-1, true) + 1e-6);
  return weight * y.to(weight.scalar_type());
}

// t5.py's GELU: the tanh approximation.
at::Tensor gelu_tanh(const at::Tensor& x) {
  return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * at::pow(x, 3.0))));
}

}  // namespace

int64_t t5_relative_bucket(int64_t relative, int64_t buckets, int64_t max_distance) {
  const int64_t half = buckets / 2;  // bidirectional: the upper half for keys after the query
  const int64_t base = relative > 0 ? half : 0;
  const int64_t distance = std::abs(relative), max_exact = half / 2;
  if (distance < max_exact) return base + distance;
  // As t5.py computes it in float32: log(d / max_exact) / log(max_distance / max_exact) * ...
  const float scaled =
      std::log(static_cast<float>(distance) / static_cast<float>(max_exact)) /
      static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact))) *
      static_cast<float>(half - max_exact);
  return base + std::min<int64_t>(max_exact + static_cast<int64_t>(scaled), half - 1);
}

Umt5Config umt5_config_of(const std::map<std::string, at::Tensor>& weights, const std::string& source,
                          int64_t text_len) {
  auto shape = [&](const std::string& name, size_t dims) {
    const auto it = weights.find(name);
    if (it == weights.end() || it->second.dim() != static_cast<int64_t>(dims))
      throw std::runtime_error(source + ": tensor '" + name + "' is missing or not " + std::to_string(dims) +
                               "-dimensional (is this the umT5-XXL encoder?)");
    return it->second.sizes();
  };
  Umt5Config c;
  c.vocab = shape("token_embedding.weight", 2)[0];
  c.dim = shape("token_embedding.weight", 2)[1];
  c.dim_attn = shape("blocks.0.attn.q.weight", 2)[0];
  c.dim_ffn = shape("blocks.0.ffn.fc1.weight", 2)[0];
  c.buckets = shape("blocks.0.pos_embedding.embedding.weight", 2)[0];
  c.heads = shape("blocks.0.pos_embedding.embedding.weight", 2)[1];
  c.layers = 0;
  while (weights.count("blocks." + std::to_string(c.layers) + ".norm1.weight")) ++c.layers;
  c.text_len = text_len;
  if (c.heads < 1 || c.dim_attn % c.heads)
    throw std::runtime_error(source + ": " + std::to_string(c.heads) +
                             " heads do not divide attention width " + std::to_string(c.dim_attn));
  return c;
}

Umt5Encoder::Umt5Encoder(const Umt5Config& config, const std::map<std::string, at::Tensor>& weights,
                         const at::Device& device, at::ScalarType dtype, const std::string& source)
    : config_(config), device_(device), dtype_(dtype) {
  const auto& c = config_;
  std::map<std::string, std::vector<int64_t>> expected{{"token_embedding.weight", {c.vocab, c.dim}},
                                                       {"norm.weight", {c.dim}}};
  for (int64_t l = 0; l < c.layers; ++l) {
    const auto b = "blocks." + std::to_string(l) + ".";
    expected[b + "norm1.weight"] = {c.dim};
    expected[b + "norm2.weight"] = {c.dim};
    for (const char* p : {"q", "k", "v"}) expected[b + "attn." + p + ".weight"] = {c.dim_attn, c.dim};
    expected[b + "attn.o.weight"] = {c.dim, c.dim_attn};
    expected[b + "ffn.gate.0.weight"] = {c.dim_ffn, c.dim};
    expected[b + "ffn.fc1.weight"] = {c.dim_ffn, c.dim};
    expected[b + "ffn.fc2.weight"] = {c.dim, c.dim_ffn};
    expected[b + "pos_embedding.embedding.weight"] = {c.buckets, c.heads};
  }
  weights_ = take_weights(expected, weights, device_, dtype_, source, "umT5");
}

at::Tensor Umt5Encoder::encode(const std::vector<int64_t>& ids) const {
  const auto& c = config_;
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n < 1 || n > c.text_len)
    throw std::invalid_argument("umT5 encodes 1 to " + std::to_string(c.text_len) + " tokens, not " +
                                std::to_string(n));
  for (int64_t id : ids) {
    if (id < 0 || id >= c.vocab)
      throw std::invalid_argument("token id " + std::to_string(id) + " is outside umT5's vocabulary");
  }
  at::NoGradGuard no_grad;
  // The bucket of every (query, key) pair, shared by the blocks' own bias tables.
  std::vector<int64_t> bucket(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) bucket[i * n + j] = t5_relative_bucket(j - i, c.buckets, c.max_distance);
  const auto buckets = at::tensor(bucket).view({n, n}).to(device_);
  const int64_t hd = c.dim_attn / c.heads;
  auto x = at::embedding(w("token_embedding.weight"), at::tensor(ids).to(device_));  // [n, dim]
  for (int64_t l = 0; l < c.layers; ++l) {
    const auto b = "blocks." + std::to_string(l) + ".";
    const auto h = rms_norm(x, w(b + "norm1.weight"));
    auto heads = [&](const char* p) {
      return at::linear(h, w(b + "attn." + p + ".weight")).view({n, c.heads, hd}).transpose(0, 1);
    };
    const auto q = heads("q"), k = heads("k"), v = heads("v");  // [heads, n, hd]
    // [n, n, heads] -> [heads, n, n]: this block's relative-position bias.
    const auto bias = at::embedding(w(b + "pos_embedding.embedding.weight"), buckets).permute({2, 0, 1});
    const auto logits = at::matmul(q, k.transpose(1, 2)) + bias;  // T5 does not scale by 1/sqrt(hd)
    const auto attn = at::softmax(logits.to(at::kFloat), -1).to(logits.scalar_type());
    const auto o = at::matmul(attn, v).transpose(0, 1).reshape({n, c.dim_attn});
    x = x + at::linear(o, w(b + "attn.o.weight"));
    const auto f = rms_norm(x, w(b + "norm2.weight"));
    x = x + at::linear(
                at::linear(f, w(b + "ffn.fc1.weight")) * gelu_tanh(at::linear(f, w(b + "ffn.gate.0.weight"))),
                w(b + "ffn.fc2.weight"));
  }
  return rms_norm(x, w("norm.weight")).to(at::kCPU, at::kFloat);
}

}  // namespace astraea
