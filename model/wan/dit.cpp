#include "model/wan/dit.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/residual_layer_norm.cuh"
#include "kernels/rms_norm_rope.cuh"
#include "model/block_ops.h"
#include "model/ranges.h"
#include "model/torch_compat.h"
#include "model/wan/dit_parts.h"

namespace astraea {

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
  const int64_t d = config_.dim;
  for (int64_t i = 0; i < config_.layers; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    auto t = [&](const std::string& k) { return take(weights, p + k); };
    Block b;
    b.qkv_w = at::cat({t("self_attn.q.weight"), t("self_attn.k.weight"), t("self_attn.v.weight")});
    b.qkv_b = at::cat({t("self_attn.q.bias"), t("self_attn.k.bias"), t("self_attn.v.bias")});
    b.ckv_w = at::cat({t("cross_attn.k.weight"), t("cross_attn.v.weight")});
    b.ckv_b = at::cat({t("cross_attn.k.bias"), t("cross_attn.v.bias")});
    for (const auto& [key, field] : Block::fields()) {
      if (key) b.*field = t(key);
    }
    b.modulation = t("modulation").reshape({6, d}).clone();  // its own storage: a trainable leaf
    blocks_.push_back(std::move(b));
  }
  for (auto it = weights.begin(); it != weights.end();) {
    if (it->first.rfind("text_encoder.", 0) == 0) {
      encoder_.insert(*it);
      it = weights.erase(it);
    } else {
      ++it;
    }
  }
  embed_ = std::move(weights);
  TORCH_CHECK(
      config_.position_octaves == 0 ||
          (embed_.count("pos_embedding.weight") &&
           embed_.at("pos_embedding.weight").sizes() == at::IntArrayRef{d, 6 * config_.position_octaves}),
      "WanDiT: ", config_.name, " with ", config_.position_octaves, " octaves of position features needs ",
      "'pos_embedding.weight' of shape [", d, ", ", 6 * config_.position_octaves, "]");
  // Conv3d with kernel == stride is a linear map of each flattened patch.
  auto& pw = embed_.at("patch_embedding.weight");
  pw = pw.reshape({d, -1}).clone();
  std::vector<float> inv(config_.head_dim() / 2);
  kernels::wan_rope_inv_freq(config_.head_dim(), 10000.0, inv.data());
  inv_freq_ = at::tensor(inv).to(pw.device());
  // A fixed Gaussian projection: distances between sketches estimate distances between inputs. In bf16,
  // as the selection pass's kernel holds it; the ATen path widens the same values.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0x5eed);
  sketch_proj_ = (at::randn({d, kSketchDim}, gen) / std::sqrt(static_cast<double>(kSketchDim)))
                     .t()
                     .contiguous()
                     .to(pw.device(), at::kBFloat16);
}

WanDiT::~WanDiT() = default;
WanDiT::WanDiT(WanDiT&&) noexcept = default;

at::Device WanDiT::device() const { return inv_freq_.device(); }

at::Tensor WanDiT::mat(const at::Tensor& w) const { return w.scalar_type() == dtype_ ? w : w.to(dtype_); }

bool WanDiT::has_text_encoder() const { return !encoder_.empty(); }

at::Tensor WanDiT::position_features(int64_t gf, int64_t gh, int64_t gw, int64_t octaves, at::Device device) {
  const auto f64 =
      at::TensorOptions().dtype(at::kDouble).device(device);  // built where used: no copy, no sync
  const auto axis = [&](int64_t size) {                       // [size, 2 * octaves]: sin, cos of each octave
    const auto u = (at::arange(size, f64) + 0.5) / static_cast<double>(size);
    const auto angle = u.unsqueeze(1) * (at::pow(2.0, at::arange(octaves, f64)) * M_PI).unsqueeze(0);
    return at::stack({at::sin(angle), at::cos(angle)}, 2).reshape({size, 2 * octaves});
  };
  const int64_t w = 2 * octaves;
  auto f = axis(gf).view({gf, 1, 1, w}).expand({gf, gh, gw, w});
  auto h = axis(gh).view({1, gh, 1, w}).expand({gf, gh, gw, w});
  auto x = axis(gw).view({1, 1, gw, w}).expand({gf, gh, gw, w});
  return at::cat({f, h, x}, 3).reshape({gf * gh * gw, 3 * w}).to(at::kFloat);
}

at::Tensor WanDiT::timestep_embedding(int64_t freq_dim, const at::Tensor& timesteps) {
  const int64_t half = freq_dim / 2;
  auto k = at::arange(half, timesteps.options().dtype(at::kDouble));
  auto arg = timesteps.to(at::kDouble).reshape({-1, 1}) * at::pow(10000.0, -k / static_cast<double>(half));
  return at::cat({at::cos(arg), at::sin(arg)}, 1).to(at::kFloat);
}

at::Tensor WanDiT::embed_context(const at::Tensor& text) const {
  const bool batched = text.dim() == 3;
  const auto t3 = batched ? text : text.unsqueeze(0);
  TORCH_CHECK(t3.dim() == 3 && t3.size(2) == config_.text_dim, "text context must be [tokens, ",
              config_.text_dim, "], got ", text.sizes());
  TORCH_CHECK(t3.size(1) <= config_.text_len, "text context has ", t3.size(1),
              " tokens, more than the model's ", config_.text_len);
  auto padded = at::zeros({t3.size(0), config_.text_len - t3.size(1), config_.text_dim},
                          at::TensorOptions().dtype(dtype_).device(device()));
  padded = at::cat({t3.to(device(), dtype_), padded}, 1);
  auto h = compat::linear_gelu_tanh(padded, mat(embed_.at("text_embedding.0.weight")),
                                    mat(embed_.at("text_embedding.0.bias")));
  auto out =
      at::linear(h, mat(embed_.at("text_embedding.2.weight")), mat(embed_.at("text_embedding.2.bias")));
  return batched ? out : out.squeeze(0);
}

WanDiT::Embedded WanDiT::embed_inputs(const at::Tensor& latents, const at::Tensor& timesteps) const {
  const auto& c = config_;
  TORCH_CHECK(latents.dim() == 5 && latents.size(1) == c.in_channels, "latents must be [B, ", c.in_channels,
              ", F, H, W], got ", latents.sizes());
  const int64_t pt = c.patch[0], ph = c.patch[1], pw = c.patch[2], bsz = latents.size(0);
  TORCH_CHECK(latents.size(2) % pt == 0 && latents.size(3) % ph == 0 && latents.size(4) % pw == 0, "latents ",
              latents.sizes(), " do not divide into patches of ", pt, "x", ph, "x", pw);
  TORCH_CHECK(timesteps.numel() == bsz, "forward: ", bsz, " latents need as many timesteps");
  Embedded in;
  in.gf = latents.size(2) / pt;
  in.gh = latents.size(3) / ph;
  in.gw = latents.size(4) / pw;
  // Patchify: [B, C, F, H, W] -> [B, N, C * pt * ph * pw], the order of the Conv3d weight.
  auto patches = latents.to(device(), dtype_)
                     .view({bsz, c.in_channels, in.gf, pt, in.gh, ph, in.gw, pw})
                     .permute({0, 2, 4, 6, 1, 3, 5, 7})
                     .reshape({bsz, in.gf * in.gh * in.gw, -1});
  in.x = at::linear(patches, mat(embed_.at("patch_embedding.weight")), mat(embed_.at("patch_embedding.bias")))
             .to(at::kFloat);
  if (c.position_octaves > 0) {
    const auto features = position_features(in.gf, in.gh, in.gw, c.position_octaves, device());
    in.x = in.x + at::linear(features, embed_.at("pos_embedding.weight"));  // [N, D], for every batch element
  }
  // Timesteps -> e (for the head) and e0 (six modulation vectors per block), in float32.
  auto t_emb = timestep_embedding(c.freq_dim, timesteps.to(device()));
  in.e = at::linear(
      at::silu(at::linear(t_emb, embed_.at("time_embedding.0.weight"), embed_.at("time_embedding.0.bias"))),
      embed_.at("time_embedding.2.weight"), embed_.at("time_embedding.2.bias"));
  in.e0 =
      at::linear(at::silu(in.e), embed_.at("time_projection.1.weight"), embed_.at("time_projection.1.bias"))
          .view({bsz, 6, c.dim});
  return in;
}

at::Tensor WanDiT::run_head(at::Tensor& x, const Embedded& in) const {
  const auto& c = config_;
  const int64_t pt = c.patch[0], ph = c.patch[1], pw = c.patch[2], bsz = x.size(0);
  auto head_mod = embed_.at("head.modulation").view({1, 2, c.dim}) + in.e.unsqueeze(1);  // shift, scale
  auto xh =
      residual_layer_norm(x, {}, {}, head_mod.narrow(1, 1, 1) + 1.0, head_mod.narrow(1, 0, 1), dtype_, c.eps);
  auto out =
      at::linear(xh, mat(embed_.at("head.head.weight")), mat(embed_.at("head.head.bias"))).to(at::kFloat);
  // Unpatchify (Wan: einsum 'fhwpqrc->cfphqwr'), per batch element.
  return out.view({bsz, in.gf, in.gh, in.gw, pt, ph, pw, c.out_channels})
      .permute({0, 7, 1, 4, 2, 5, 3, 6})
      .reshape({bsz, c.out_channels, in.gf * pt, in.gh * ph, in.gw * pw});
}

void WanDiT::dense_block(const Block& b, at::Tensor& x, const at::Tensor& e0, const at::Tensor& contexts,
                         const RopeGrid& rope, BlockTokenCache* record, bool record_kv,
                         const SequenceSplit* split, BlockReuse* reuse) const {
  const int64_t bsz = x.size(0), d = config_.dim, heads = config_.heads, hd = config_.head_dim();
  const double eps = config_.eps;
  auto heads_view = [&](const at::Tensor& t) { return t.view({bsz, t.size(1), heads, hd}); };
  OpSequence op(Op::kSelection);  // the sketch is the next sparse step's input to selection
  if (record)
    record->sketch = at::matmul(x[0], sketch_proj_.to(at::kFloat).t());  // the input, before x is updated
  // shift, scale, gate (self-attention); shift, scale, gate (feed-forward): each [B, 1, D].
  op.next(Op::kNorm);
  auto mod = (b.modulation + e0).unsqueeze(2);
  auto m = [&](int64_t i) { return mod.select(1, i); };
  at::Tensor y, k, v;
  AttentionResult attn;
  if (reuse && reuse->self) {
    TORCH_CHECK(reuse->self_out.defined(), "block attention reuse: no kept self-attention output");
    y = reuse->self_out;  // broadcast from the block's last computation (PAB)
  } else {
    auto xn = residual_layer_norm(x, {}, {}, m(1) + 1.0, m(0), dtype_, eps);
    op.next(Op::kProjections);
    auto qkv = at::linear(xn, mat(b.qkv_w), mat(b.qkv_b));  // [B, N, 3D]
    auto q = rms_norm_rope(qkv.narrow(2, 0, d), b.norm_q, &rope, heads, eps);
    k = rms_norm_rope(qkv.narrow(2, d, d), b.norm_k, &rope, heads, eps);
    v = qkv.narrow(2, 2 * d, d);
    op.next(Op::kAttention);
    attn = sequence_attention(heads_view(q), heads_view(k), heads_view(v), record != nullptr, split, op);
    op.next(Op::kProjections);
    y = at::linear(attn.out, mat(b.o_w), mat(b.o_b));
    if (reuse) reuse->self_out = y;
  }

  op.next(Op::kNorm);
  auto xc = residual_layer_norm(x, y, m(2), b.norm3_w, b.norm3_b, dtype_, eps);
  auto f = cross_attention_ffn(b, x, xc, contexts, m(3), m(4), op, reuse);
  op.next(Op::kNorm);
  residual_layer_norm(x, f, m(5), {}, {}, dtype_, eps, false);
  op.next(Op::kScatter);  // filling the caches
  if (record) {
    record->out = x[0].to(dtype_, /*non_blocking=*/false, /*copy=*/true);  // one copy, never an alias of x
    record->lse = attn.lse[0].mean(0);
    record->stale = at::zeros({x.size(1)}, x.options());
    if (record_kv) {
      record->k = k[0].clone();
      record->v = v[0].clone();
    }
  }
}

at::Tensor WanDiT::cross_attention_ffn(const Block& b, at::Tensor& stream, const at::Tensor& xc,
                                       const at::Tensor& context, const at::Tensor& shift,
                                       const at::Tensor& scale, OpSequence& op, BlockReuse* reuse) const {
  const int64_t d = config_.dim, heads = config_.heads;
  const double eps = config_.eps;
  auto split_heads = [&](const at::Tensor& t) {  // [..., D] -> [..., heads, head_dim]
    auto sizes = t.sizes().vec();
    sizes.back() = heads;
    sizes.push_back(config_.head_dim());
    return t.view(sizes);
  };
  const bool tokenwise = reuse && reuse->tokenwise, some = tokenwise && reuse->fresh.defined();
  const auto& fresh = some ? reuse->fresh : at::Tensor();
  // The cross-attention of the rows X of the residual stream (ToCa: also their entropy).
  auto cross = [&](const at::Tensor& x) {
    op.next(Op::kProjections);
    auto cq = rms_norm_rope(at::linear(x, mat(b.cq_w), mat(b.cq_b)), b.cnorm_q, nullptr, heads, eps);
    auto ckv = at::linear(context, mat(b.ckv_w), mat(b.ckv_b));
    auto ck = rms_norm_rope(ckv.narrow(-1, 0, d), b.cnorm_k, nullptr, heads, eps);
    auto cv = ckv.narrow(-1, d, d);
    op.next(Op::kAttention);
    auto cattn = attention(split_heads(cq), split_heads(ck), split_heads(cv), false).out;
    if (tokenwise) {  // ToCa's score: the entropy of the token's attention map over the text, mean over heads
      const double scale_qk = 1.0 / std::sqrt(static_cast<double>(config_.head_dim()));
      auto p = at::einsum("bnhd,blhd->bhnl", {split_heads(cq).to(at::kFloat), split_heads(ck).to(at::kFloat)})
                   .mul_(scale_qk)
                   .softmax(-1)
                   .mean(1)[0];  // [n, L]
      auto entropy = -(p * (p + 1e-7).log()).sum(-1);
      if (some) {
        reuse->entropy.index_copy_(0, fresh, entropy);
      } else {
        reuse->entropy = entropy;
      }
    }
    op.next(Op::kProjections);
    return at::linear(cattn, mat(b.co_w), mat(b.co_b));
  };
  auto ffn = [&](const at::Tensor& x) {
    op.next(Op::kFeedForward);
    return at::linear(compat::linear_gelu_tanh(x, mat(b.ffn1_w), mat(b.ffn1_b)), mat(b.ffn2_w),
                      mat(b.ffn2_b));
  };
  at::Tensor cy;
  if (reuse && reuse->cross) {
    TORCH_CHECK(reuse->cross_out.defined(), "block attention reuse: no kept cross-attention output");
    cy = reuse->cross_out;  // broadcast from the block's last computation (PAB)
  } else if (some) {
    TORCH_CHECK(reuse->cross_out.defined() && reuse->ffn_out.defined(),
                "ToCa: no kept outputs for the other tokens");
    reuse->cross_out.index_copy_(1, fresh,
                                 cross(xc.index_select(1, fresh)).to(reuse->cross_out.scalar_type()));
    cy = reuse->cross_out;
  } else {
    cy = cross(xc);
    if (reuse) reuse->cross_out = cy;
  }
  op.next(Op::kNorm);
  auto xf = residual_layer_norm(stream, cy, {}, scale + 1.0, shift, dtype_, eps);
  if (some) {  // the feed-forward of the fresh tokens; the others keep theirs
    reuse->ffn_out.index_copy_(1, fresh, ffn(xf.index_select(1, fresh)).to(reuse->ffn_out.scalar_type()));
    return reuse->ffn_out;
  }
  auto f = ffn(xf);
  if (tokenwise) reuse->ffn_out = f;
  return f;
}

at::Tensor WanDiT::forward_batch(const at::Tensor& latents, const at::Tensor& timesteps,
                                 const at::Tensor& contexts) const {
  TORCH_CHECK(contexts.dim() == 3 && contexts.size(0) == latents.size(0), "forward_batch: ", latents.size(0),
              " latents need as many contexts");
  auto in = embed_inputs(latents, timesteps);
  RopeGrid rope{in.gf, in.gh, in.gw, inv_freq_, {}};
  at::Tensor x = in.x;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const auto range = ScopedRange::block(static_cast<int64_t>(i));
    dense_block(blocks_[i], x, in.e0, contexts, rope, nullptr);
  }
  return run_head(x, in);
}

at::Tensor WanDiT::forward_with_policy(const at::Tensor& latents, double timestep, const at::Tensor& context,
                                       StackPolicy& policy) const {
  TORCH_CHECK(latents.dim() == 4, "latents must be [C, F, H, W], got ", latents.sizes());
  auto t = at::full({1}, timestep, at::TensorOptions().dtype(at::kDouble).device(device()));
  auto in = embed_inputs(latents.unsqueeze(0), t);
  const auto contexts = context.unsqueeze(0);
  RopeGrid rope{in.gf, in.gh, in.gw, inv_freq_, {}};
  at::Tensor x = in.x;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const auto& b = blocks_[i];
    StackPoint p{static_cast<int64_t>(i), x, in.e, in.e0, [&] {
                   auto mod = (b.modulation + in.e0).unsqueeze(2);  // [1, 6, 1, D]
                   return residual_layer_norm(x, {}, {}, mod.select(1, 1) + 1.0, mod.select(1, 0), at::kFloat,
                                              config_.eps);
                 }};
    const auto stand_in = policy.before_block(p);
    if (stand_in.defined()) {
      x = x + stand_in;
      return run_head(x, in).squeeze(0);
    }
    const auto range = ScopedRange::block(static_cast<int64_t>(i));
    dense_block(b, x, in.e0, contexts, rope, nullptr, false, nullptr,
                policy.attention(static_cast<int64_t>(i)));
  }
  policy.after_stack(x);
  return run_head(x, in).squeeze(0);
}

Weights WanDiT::state_dict() const {
  const int64_t d = config_.dim;
  Weights w = embed_;
  w.insert(encoder_.begin(), encoder_.end());
  w["patch_embedding.weight"] =
      embed_.at("patch_embedding.weight")
          .view({d, config_.in_channels, config_.patch[0], config_.patch[1], config_.patch[2]});
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const auto& b = blocks_[i];
    const std::string p = "blocks." + std::to_string(i) + ".";
    const char* qkv[] = {"q", "k", "v"};
    for (int j = 0; j < 3; ++j) {
      w[p + "self_attn." + qkv[j] + ".weight"] = b.qkv_w.narrow(0, j * d, d);
      w[p + "self_attn." + qkv[j] + ".bias"] = b.qkv_b.narrow(0, j * d, d);
    }
    for (int j = 0; j < 2; ++j) {
      w[p + "cross_attn." + qkv[j + 1] + ".weight"] = b.ckv_w.narrow(0, j * d, d);
      w[p + "cross_attn." + qkv[j + 1] + ".bias"] = b.ckv_b.narrow(0, j * d, d);
    }
    for (const auto& [key, field] : Block::fields()) {
      if (key) w[p + key] = b.*field;
    }
    w[p + "modulation"] = b.modulation.view({1, 6, d});
  }
  return w;
}

std::vector<at::Tensor> WanDiT::parameters() const {
  std::vector<at::Tensor> p;
  for (const auto* m : {&embed_, &encoder_})
    for (const auto& kv : *m) p.push_back(kv.second);
  for (const auto& b : blocks_) {
    for (const auto& field : Block::fields()) p.push_back(b.*field.second);
  }
  return p;
}

}  // namespace astraea
