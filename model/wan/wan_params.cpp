// The parameters of a Wan 2.1 DiT under its checkpoint keys (wan/modules/model.py), and of the
// tiny preset's own text encoder.
#include <string>

#include "model/wan/dit.h"

namespace astraea {

std::vector<ParamSpec> wan_parameter_specs(const ModelConfig& c) {
  const int64_t d = c.dim;
  const int64_t patch_out = c.out_channels * c.patch[0] * c.patch[1] * c.patch[2];
  std::vector<ParamSpec> s;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, ParamKind kind) {
    s.push_back({name + ".weight", {out, in}, kind});
    s.push_back({name + ".bias", {out}, kind});
  };
  s.push_back(
      {"patch_embedding.weight", {d, c.in_channels, c.patch[0], c.patch[1], c.patch[2]}, ParamKind::kMatrix});
  s.push_back({"patch_embedding.bias", {d}, ParamKind::kMatrix});
  if (c.position_octaves > 0)
    s.push_back({"pos_embedding.weight", {d, 6 * c.position_octaves}, ParamKind::kFloat});
  linear("text_embedding.0", d, c.text_dim, ParamKind::kMatrix);
  linear("text_embedding.2", d, d, ParamKind::kMatrix);
  linear("time_embedding.0", d, c.freq_dim, ParamKind::kFloat);
  linear("time_embedding.2", d, d, ParamKind::kFloat);
  linear("time_projection.1", 6 * d, d, ParamKind::kFloat);
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* attn : {"self_attn", "cross_attn"}) {
      for (const char* p : {"q", "k", "v", "o"}) linear(b + attn + "." + p, d, d, ParamKind::kMatrix);
      s.push_back({b + attn + ".norm_q.weight", {d}, ParamKind::kFloat});
      s.push_back({b + attn + ".norm_k.weight", {d}, ParamKind::kFloat});
    }
    s.push_back({b + "norm3.weight", {d}, ParamKind::kFloat});
    s.push_back({b + "norm3.bias", {d}, ParamKind::kFloat});
    linear(b + "ffn.0", c.ffn_dim, d, ParamKind::kMatrix);
    linear(b + "ffn.2", d, c.ffn_dim, ParamKind::kMatrix);
    s.push_back({b + "modulation", {1, 6, d}, ParamKind::kFloat});
  }
  linear("head.head", patch_out, d, ParamKind::kMatrix);
  s.push_back({"head.modulation", {1, 2, d}, ParamKind::kFloat});
  if (c.text_vocab > 0) {
    // The preset's own text encoder (not part of Wan's checkpoints): float32, it is small.
    const int64_t t = c.text_dim;
    const std::string e = "text_encoder.";
    s.push_back({e + "token_embedding.weight", {c.text_vocab, t}, ParamKind::kFloat});
    s.push_back({e + "position_embedding.weight", {c.text_len, t}, ParamKind::kFloat});
    for (const char* norm : {"block.norm1", "block.norm2", "norm"}) {
      s.push_back({e + norm + ".weight", {t}, ParamKind::kFloat});
      s.push_back({e + norm + ".bias", {t}, ParamKind::kFloat});
    }
    linear(e + "block.attn.qkv", 3 * t, t, ParamKind::kFloat);
    linear(e + "block.attn.o", t, t, ParamKind::kFloat);
    linear(e + "block.ffn.0", 4 * t, t, ParamKind::kFloat);
    linear(e + "block.ffn.2", t, 4 * t, ParamKind::kFloat);
  }
  return s;
}

}  // namespace astraea
