#include "core/dit.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/block_ops.h"
#include "core/torch_compat.h"
#include "kernels/rms_norm_rope.cuh"

namespace astraea {

struct WanDiT::Block {
  at::Tensor qkv_w, qkv_b, o_w, o_b, norm_q, norm_k;           // self-attention, q|k|v fused
  at::Tensor norm3_w, norm3_b;                                  // cross-attention input norm
  at::Tensor cq_w, cq_b, ckv_w, ckv_b, co_w, co_b, cnorm_q, cnorm_k;  // cross-attention, k|v fused
  at::Tensor ffn1_w, ffn1_b, ffn2_w, ffn2_b;
  at::Tensor modulation;  // [6, D] float32
};

namespace {

at::Tensor take(Weights& w, const std::string& key) {
  auto it = w.find(key);
  TORCH_CHECK(it != w.end(), "weights lack '", key, "'");
  at::Tensor t = std::move(it->second);
  w.erase(it);
  return t;
}

}  // namespace

WanDiT::WanDiT(ModelConfig config, Weights weights, at::ScalarType dtype)
    : config_(std::move(config)), dtype_(dtype) {
  for (int64_t i = 0; i < config_.layers; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    auto t = [&](const std::string& k) { return take(weights, p + k); };
    Block b;
    b.qkv_w = at::cat({t("self_attn.q.weight"), t("self_attn.k.weight"), t("self_attn.v.weight")});
    b.qkv_b = at::cat({t("self_attn.q.bias"), t("self_attn.k.bias"), t("self_attn.v.bias")});
    b.o_w = t("self_attn.o.weight");
    b.o_b = t("self_attn.o.bias");
    b.norm_q = t("self_attn.norm_q.weight");
    b.norm_k = t("self_attn.norm_k.weight");
    b.norm3_w = t("norm3.weight");
    b.norm3_b = t("norm3.bias");
    b.cq_w = t("cross_attn.q.weight");
    b.cq_b = t("cross_attn.q.bias");
    b.ckv_w = at::cat({t("cross_attn.k.weight"), t("cross_attn.v.weight")});
    b.ckv_b = at::cat({t("cross_attn.k.bias"), t("cross_attn.v.bias")});
    b.co_w = t("cross_attn.o.weight");
    b.co_b = t("cross_attn.o.bias");
    b.cnorm_q = t("cross_attn.norm_q.weight");
    b.cnorm_k = t("cross_attn.norm_k.weight");
    b.ffn1_w = t("ffn.0.weight");
    b.ffn1_b = t("ffn.0.bias");
    b.ffn2_w = t("ffn.2.weight");
    b.ffn2_b = t("ffn.2.bias");
    b.modulation = t("modulation").reshape({6, config_.dim});
    blocks_.push_back(std::move(b));
  }
  embed_ = std::move(weights);
  // Conv3d with kernel == stride is a linear map of each flattened patch.
  auto& pw = embed_.at("patch_embedding.weight");
  pw = pw.reshape({config_.dim, -1});
  std::vector<float> inv(config_.head_dim() / 2);
  kernels::wan_rope_inv_freq(config_.head_dim(), 10000.0, inv.data());
  inv_freq_ = at::tensor(inv).to(pw.device());
}

WanDiT::~WanDiT() = default;
WanDiT::WanDiT(WanDiT&&) noexcept = default;

at::Device WanDiT::device() const { return inv_freq_.device(); }

at::Tensor WanDiT::timestep_embedding(int64_t freq_dim, double timestep) {
  const int64_t half = freq_dim / 2;
  auto k = at::arange(half, at::TensorOptions().dtype(at::kDouble));
  auto arg = timestep * at::pow(10000.0, -k / static_cast<double>(half));
  return at::cat({at::cos(arg), at::sin(arg)}).to(at::kFloat);
}

at::Tensor WanDiT::embed_context(const at::Tensor& text) const {
  TORCH_CHECK(text.dim() == 2 && text.size(1) == config_.text_dim,
              "text context must be [tokens, ", config_.text_dim, "], got ", text.sizes());
  TORCH_CHECK(text.size(0) <= config_.text_len, "text context has ", text.size(0),
              " tokens, more than the model's ", config_.text_len);
  auto padded = at::zeros({config_.text_len, config_.text_dim},
                          at::TensorOptions().dtype(dtype_).device(device()));
  padded.narrow(0, 0, text.size(0)).copy_(text);
  auto h = compat::linear_gelu_tanh(padded, embed_.at("text_embedding.0.weight"),
                                    embed_.at("text_embedding.0.bias"));
  return at::linear(h, embed_.at("text_embedding.2.weight"), embed_.at("text_embedding.2.bias"));
}

at::Tensor WanDiT::forward(const at::Tensor& latents, double timestep, const at::Tensor& context) const {
  const auto& c = config_;
  TORCH_CHECK(latents.dim() == 4 && latents.size(0) == c.in_channels,
              "latents must be [", c.in_channels, ", F, H, W], got ", latents.sizes());
  const int64_t pt = c.patch[0], ph = c.patch[1], pw = c.patch[2];
  TORCH_CHECK(latents.size(1) % pt == 0 && latents.size(2) % ph == 0 && latents.size(3) % pw == 0,
              "latents ", latents.sizes(), " do not divide into patches of ", pt, "x", ph, "x", pw);
  const int64_t gf = latents.size(1) / pt, gh = latents.size(2) / ph, gw = latents.size(3) / pw;
  const int64_t n = gf * gh * gw, d = c.dim, heads = c.heads, hd = c.head_dim();
  const double eps = c.eps;

  // Patchify: [C, F, H, W] -> [N, C * pt * ph * pw], the order of the Conv3d weight.
  auto patches = latents.to(device(), dtype_)
                     .view({c.in_channels, gf, pt, gh, ph, gw, pw})
                     .permute({1, 3, 5, 0, 2, 4, 6})
                     .reshape({n, -1});
  at::Tensor x = at::linear(patches, embed_.at("patch_embedding.weight"),
                            embed_.at("patch_embedding.bias"))
                     .to(at::kFloat);

  // Timestep -> e (for the head) and e0 (six modulation vectors per block), in float32.
  auto t_emb = timestep_embedding(c.freq_dim, timestep).to(device());
  auto e = at::linear(at::silu(at::linear(t_emb, embed_.at("time_embedding.0.weight"),
                                          embed_.at("time_embedding.0.bias"))),
                      embed_.at("time_embedding.2.weight"), embed_.at("time_embedding.2.bias"));
  auto e0 = at::linear(at::silu(e), embed_.at("time_projection.1.weight"),
                       embed_.at("time_projection.1.bias"))
                .view({6, d});

  RopeGrid rope{gf, gh, gw, inv_freq_};
  auto heads_view = [&](const at::Tensor& t) { return t.view({t.size(0), heads, hd}); };
  for (const auto& b : blocks_) {
    auto mod = b.modulation + e0;  // shift, scale, gate (self-attn); shift, scale, gate (ffn)
    auto xn = residual_layer_norm(x, {}, {}, mod[1] + 1.0, mod[0], dtype_, eps);
    auto qkv = at::linear(xn, b.qkv_w, b.qkv_b);  // [N, 3D]
    auto q = rms_norm_rope(qkv.narrow(1, 0, d), b.norm_q, &rope, heads, eps);
    auto k = rms_norm_rope(qkv.narrow(1, d, d), b.norm_k, &rope, heads, eps);
    auto v = qkv.narrow(1, 2 * d, d);
    auto y = at::linear(attention(heads_view(q), heads_view(k), heads_view(v), false).out, b.o_w, b.o_b);

    auto xc = residual_layer_norm(x, y, mod[2], b.norm3_w, b.norm3_b, dtype_, eps);
    auto cq = rms_norm_rope(at::linear(xc, b.cq_w, b.cq_b), b.cnorm_q, nullptr, heads, eps);
    auto ckv = at::linear(context, b.ckv_w, b.ckv_b);
    auto ck = rms_norm_rope(ckv.narrow(1, 0, d), b.cnorm_k, nullptr, heads, eps);
    auto cv = ckv.narrow(1, d, d);
    auto cy = at::linear(attention(heads_view(cq), heads_view(ck), heads_view(cv), false).out,
                         b.co_w, b.co_b);

    auto xf = residual_layer_norm(x, cy, {}, mod[4] + 1.0, mod[3], dtype_, eps);
    auto f = at::linear(compat::linear_gelu_tanh(xf, b.ffn1_w, b.ffn1_b), b.ffn2_w, b.ffn2_b);
    residual_layer_norm(x, f, mod[5], {}, {}, dtype_, eps, false);
  }

  auto head_mod = embed_.at("head.modulation").view({2, d}) + e;  // shift, scale
  auto xh = residual_layer_norm(x, {}, {}, head_mod[1] + 1.0, head_mod[0], dtype_, eps);
  auto out = at::linear(xh, embed_.at("head.head.weight"), embed_.at("head.head.bias")).to(at::kFloat);
  // Unpatchify (Wan: einsum 'fhwpqrc->cfphqwr').
  return out.view({gf, gh, gw, pt, ph, pw, c.out_channels})
      .permute({6, 0, 3, 1, 4, 2, 5})
      .reshape({c.out_channels, gf * pt, gh * ph, gw * pw});
}

}  // namespace astraea
