#include "core/dit.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/block_ops.h"
#include "core/ranges.h"
#include "core/shapes_world.h"
#include "core/torch_compat.h"
#include "io/field_error.h"
#include "kernels/residual_layer_norm.cuh"
#include "kernels/rms_norm_rope.cuh"
#include "kernels/token_scatter.cuh"
#include "kernels/token_select.cuh"

namespace astraea {

struct WanDiT::Block {
  at::Tensor qkv_w, qkv_b, o_w, o_b, norm_q, norm_k;           // self-attention, q|k|v fused
  at::Tensor norm3_w, norm3_b;                                  // cross-attention input norm
  at::Tensor cq_w, cq_b, ckv_w, ckv_b, co_w, co_b, cnorm_q, cnorm_k;  // cross-attention, k|v fused
  at::Tensor ffn1_w, ffn1_b, ffn2_w, ffn2_b;
  at::Tensor modulation;  // [6, D] float32

  /// Every tensor, in parameters() order, with its key under "blocks.N." in Wan's checkpoints.
  /// The fused q|k|v and k|v and the reshaped modulation have no key here: the constructor and
  /// state_dict() join and split them.
  static const std::vector<std::pair<const char*, at::Tensor Block::*>>& fields() {
    static const std::vector<std::pair<const char*, at::Tensor Block::*>> all = {
        {nullptr, &Block::qkv_w}, {nullptr, &Block::qkv_b},
        {"self_attn.o.weight", &Block::o_w}, {"self_attn.o.bias", &Block::o_b},
        {"self_attn.norm_q.weight", &Block::norm_q}, {"self_attn.norm_k.weight", &Block::norm_k},
        {"norm3.weight", &Block::norm3_w}, {"norm3.bias", &Block::norm3_b},
        {"cross_attn.q.weight", &Block::cq_w}, {"cross_attn.q.bias", &Block::cq_b},
        {nullptr, &Block::ckv_w}, {nullptr, &Block::ckv_b},
        {"cross_attn.o.weight", &Block::co_w}, {"cross_attn.o.bias", &Block::co_b},
        {"cross_attn.norm_q.weight", &Block::cnorm_q}, {"cross_attn.norm_k.weight", &Block::cnorm_k},
        {"ffn.0.weight", &Block::ffn1_w}, {"ffn.0.bias", &Block::ffn1_b},
        {"ffn.2.weight", &Block::ffn2_w}, {"ffn.2.bias", &Block::ffn2_b},
        {nullptr, &Block::modulation}};
    return all;
  }
};

namespace {

at::Tensor take(Weights& w, const std::string& key) {
  auto it = w.find(key);
  TORCH_CHECK(it != w.end(), "weights lack '", key, "'");
  at::Tensor t = std::move(it->second);
  w.erase(it);
  return t;
}

// The tokens a block computes: the top ceil(budget * N) by score, in runs of `tile` consecutive
// tokens when tiled (a tile scores as its best token), with at least `min_frame_share` of every frame's
// tokens among them. Ascending indices, so gathers read memory in order.
// How many of n tokens a budget computes: ceil(budget * n), at least one.
int64_t budget_tokens(double budget, int64_t n) {
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(budget * static_cast<double>(n))), 1, n);
}

at::Tensor select_tokens(const at::Tensor& score, double budget, const SelectionParams& sel, const RopeGrid& grid) {
  const int64_t n = score.size(0);
  const int64_t k = budget_tokens(budget, n);
  at::Tensor s = score;
  if (sel.min_frame_share > 0 && grid.frames * grid.height * grid.width == n) {
    // Each frame's best tokens jump the queue: a bonus above every score.
    const int64_t per_frame = grid.height * grid.width;
    const int64_t m = std::min<int64_t>(per_frame, static_cast<int64_t>(std::ceil(sel.min_frame_share * static_cast<double>(per_frame))));
    auto frame_top = std::get<1>(score.view({grid.frames, per_frame}).topk(m, 1));
    auto base = at::arange(grid.frames, frame_top.options()).mul_(per_frame).unsqueeze(1);
    s = score.clone();
    // The bonus stays on the device: reading the maximum back would stall every block on the host.
    const auto bonus = (score.abs().max() + 1.0).mul_(2.0).expand({grid.frames * m});
    s.index_add_(0, (frame_top + base).flatten(), bonus);
  }
  if (sel.tile > 1) {
    const int64_t tiles = (n + sel.tile - 1) / sel.tile;
    auto padded = at::constant_pad_nd(s, {0, tiles * sel.tile - n}, -1e30);
    auto tile_score = padded.view({tiles, sel.tile}).amax(1);
    const int64_t kt = std::min<int64_t>(tiles, (k + sel.tile - 1) / sel.tile);
    auto chosen = std::get<1>(tile_score.topk(kt, 0, true, false));
    auto idx = (chosen.unsqueeze(1) * sel.tile + at::arange(sel.tile, chosen.options()).unsqueeze(0)).flatten();
    // Only a padded last tile reaches past n; masking waits for the device, so skip it when none can.
    if (tiles * sel.tile != n) idx = idx.masked_select(idx < n);
    return std::get<0>(idx.sort());
  }
  return std::get<0>(std::get<1>(at::topk(s, k, 0, true, false)).sort());
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
  TORCH_CHECK(config_.position_octaves == 0 ||
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

at::Tensor WanDiT::mat(const at::Tensor& w) const {
  return w.scalar_type() == dtype_ ? w : w.to(dtype_);
}

bool WanDiT::has_text_encoder() const { return !encoder_.empty(); }

at::Tensor WanDiT::position_features(int64_t gf, int64_t gh, int64_t gw, int64_t octaves, at::Device device) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble).device(device);  // built where used: no copy, no sync
  const auto axis = [&](int64_t size) {  // [size, 2 * octaves]: sin, cos of each octave
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

at::Tensor WanDiT::encode_prompt(const std::string& prompt) const {
  const int64_t words = static_cast<int64_t>(shapes::tokenize(prompt).size());
  return encode_prompts({prompt})[0].narrow(0, 0, std::min(words, config_.text_len));
}

at::Tensor WanDiT::encode_prompts(const std::vector<std::string>& prompts) const {
  TORCH_CHECK(has_text_encoder(), config_.name, " has no text encoder of its own");
  const int64_t b = static_cast<int64_t>(prompts.size()), len = config_.text_len, t = config_.text_dim;
  // Word ids, padded with 0, and which positions hold words.
  std::vector<int64_t> ids(static_cast<size_t>(b * len), 0);
  for (int64_t i = 0; i < b; ++i) {
    const auto words = shapes::tokenize(prompts[static_cast<size_t>(i)]);  // throws naming an unknown word
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
  auto q = qkv.select(2, 0).transpose(1, 2), k = qkv.select(2, 1).transpose(1, 2), v = qkv.select(2, 2).transpose(1, 2);
  auto scores = at::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));  // [B, H, L, L]
  scores = scores.masked_fill((id == 0).view({b, 1, 1, len}), -1e9);
  auto a = at::matmul(at::softmax(scores, -1), v).transpose(1, 2).reshape({b, len, t});
  x = x + at::linear(a, w("block.attn.o.weight"), w("block.attn.o.bias"));
  h = at::layer_norm(x, {t}, w("block.norm2.weight"), w("block.norm2.bias"), 1e-6);
  x = x + at::linear(at::gelu(at::linear(h, w("block.ffn.0.weight"), w("block.ffn.0.bias")), "tanh"),
                     w("block.ffn.2.weight"), w("block.ffn.2.bias"));
  return at::layer_norm(x, {t}, w("norm.weight"), w("norm.bias"), 1e-6) * valid;
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
  auto out = at::linear(h, mat(embed_.at("text_embedding.2.weight")), mat(embed_.at("text_embedding.2.bias")));
  return batched ? out : out.squeeze(0);
}

at::Tensor WanDiT::forward(const at::Tensor& latents, double timestep, const at::Tensor& context) const {
  TORCH_CHECK(latents.dim() == 4, "latents must be [C, F, H, W], got ", latents.sizes());
  auto t = at::full({1}, timestep, at::TensorOptions().dtype(at::kDouble).device(device()));
  return forward_batch(latents.unsqueeze(0), t, context.unsqueeze(0)).squeeze(0);
}

// The inputs of the blocks: patch tokens in the float32 residual stream, the timestep vectors,
// and the token grid.
struct WanDiT::Embedded {
  at::Tensor x;   // [B, N, D] float32
  at::Tensor e;   // [B, D] float32, for the head
  at::Tensor e0;  // [B, 6, D] float32, modulation of every block
  int64_t gf = 0, gh = 0, gw = 0;
};

WanDiT::Embedded WanDiT::embed_inputs(const at::Tensor& latents, const at::Tensor& timesteps) const {
  const auto& c = config_;
  TORCH_CHECK(latents.dim() == 5 && latents.size(1) == c.in_channels,
              "latents must be [B, ", c.in_channels, ", F, H, W], got ", latents.sizes());
  const int64_t pt = c.patch[0], ph = c.patch[1], pw = c.patch[2], bsz = latents.size(0);
  TORCH_CHECK(latents.size(2) % pt == 0 && latents.size(3) % ph == 0 && latents.size(4) % pw == 0,
              "latents ", latents.sizes(), " do not divide into patches of ", pt, "x", ph, "x", pw);
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
  in.e = at::linear(at::silu(at::linear(t_emb, embed_.at("time_embedding.0.weight"), embed_.at("time_embedding.0.bias"))),
                    embed_.at("time_embedding.2.weight"), embed_.at("time_embedding.2.bias"));
  in.e0 = at::linear(at::silu(in.e), embed_.at("time_projection.1.weight"), embed_.at("time_projection.1.bias"))
              .view({bsz, 6, c.dim});
  return in;
}

at::Tensor WanDiT::run_head(at::Tensor& x, const Embedded& in) const {
  const auto& c = config_;
  const int64_t pt = c.patch[0], ph = c.patch[1], pw = c.patch[2], bsz = x.size(0);
  auto head_mod = embed_.at("head.modulation").view({1, 2, c.dim}) + in.e.unsqueeze(1);  // shift, scale
  auto xh = residual_layer_norm(x, {}, {}, head_mod.narrow(1, 1, 1) + 1.0, head_mod.narrow(1, 0, 1), dtype_, c.eps);
  auto out = at::linear(xh, mat(embed_.at("head.head.weight")), mat(embed_.at("head.head.bias"))).to(at::kFloat);
  // Unpatchify (Wan: einsum 'fhwpqrc->cfphqwr'), per batch element.
  return out.view({bsz, in.gf, in.gh, in.gw, pt, ph, pw, c.out_channels})
      .permute({0, 7, 1, 4, 2, 5, 3, 6})
      .reshape({bsz, c.out_channels, in.gf * pt, in.gh * ph, in.gw * pw});
}

void WanDiT::dense_block(const Block& b, at::Tensor& x, const at::Tensor& e0, const at::Tensor& contexts,
                         const RopeGrid& rope, BlockTokenCache* record, bool record_kv) const {
  const int64_t bsz = x.size(0), d = config_.dim, heads = config_.heads, hd = config_.head_dim();
  const double eps = config_.eps;
  auto heads_view = [&](const at::Tensor& t) { return t.view({bsz, t.size(1), heads, hd}); };
  OpSequence op(Op::kSelection);  // the sketch is the next sparse step's input to selection
  if (record) record->sketch = at::matmul(x[0], sketch_proj_.to(at::kFloat).t());  // the input, before x is updated
  // shift, scale, gate (self-attention); shift, scale, gate (feed-forward): each [B, 1, D].
  op.next(Op::kNorm);
  auto mod = (b.modulation + e0).unsqueeze(2);
  auto m = [&](int64_t i) { return mod.select(1, i); };
  auto xn = residual_layer_norm(x, {}, {}, m(1) + 1.0, m(0), dtype_, eps);
  op.next(Op::kProjections);
  auto qkv = at::linear(xn, mat(b.qkv_w), mat(b.qkv_b));  // [B, N, 3D]
  auto q = rms_norm_rope(qkv.narrow(2, 0, d), b.norm_q, &rope, heads, eps);
  auto k = rms_norm_rope(qkv.narrow(2, d, d), b.norm_k, &rope, heads, eps);
  auto v = qkv.narrow(2, 2 * d, d);
  op.next(Op::kAttention);
  auto attn = attention(heads_view(q), heads_view(k), heads_view(v), record != nullptr);
  op.next(Op::kProjections);
  auto y = at::linear(attn.out, mat(b.o_w), mat(b.o_b));

  op.next(Op::kNorm);
  auto xc = residual_layer_norm(x, y, m(2), b.norm3_w, b.norm3_b, dtype_, eps);
  auto f = cross_attention_ffn(b, x, xc, contexts, m(3), m(4), op);
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
                                       const at::Tensor& context, const at::Tensor& shift, const at::Tensor& scale,
                                       OpSequence& op) const {
  const int64_t d = config_.dim, heads = config_.heads;
  const double eps = config_.eps;
  auto split_heads = [&](const at::Tensor& t) {  // [..., D] -> [..., heads, head_dim]
    auto sizes = t.sizes().vec();
    sizes.back() = heads;
    sizes.push_back(config_.head_dim());
    return t.view(sizes);
  };
  op.next(Op::kProjections);
  auto cq = rms_norm_rope(at::linear(xc, mat(b.cq_w), mat(b.cq_b)), b.cnorm_q, nullptr, heads, eps);
  auto ckv = at::linear(context, mat(b.ckv_w), mat(b.ckv_b));
  auto ck = rms_norm_rope(ckv.narrow(-1, 0, d), b.cnorm_k, nullptr, heads, eps);
  auto cv = ckv.narrow(-1, d, d);
  op.next(Op::kAttention);
  auto cattn = attention(split_heads(cq), split_heads(ck), split_heads(cv), false).out;
  op.next(Op::kProjections);
  auto cy = at::linear(cattn, mat(b.co_w), mat(b.co_b));
  op.next(Op::kNorm);
  auto xf = residual_layer_norm(stream, cy, {}, scale + 1.0, shift, dtype_, eps);
  op.next(Op::kFeedForward);
  return at::linear(compat::linear_gelu_tanh(xf, mat(b.ffn1_w), mat(b.ffn1_b)), mat(b.ffn2_w), mat(b.ffn2_b));
}

void WanDiT::sparse_block(const Block& b, const at::Tensor& in, const at::Tensor& e0, const at::Tensor& contexts,
                          const RopeGrid& rope, double budget, const SelectionParams& sel, BlockTokenCache& cache,
                          int64_t& computed) const {
  const int64_t n = in.size(0), d = config_.dim, heads = config_.heads, hd = config_.head_dim();
  const double eps = config_.eps;
  auto mod = (b.modulation + e0).select(0, 0);  // [6, D]: shift, scale, gate (attention); the same (FFN)
  auto m = [&](int64_t i) { return mod.select(0, i); };
  // The fused kernels run a bf16 cache. Their top-k takes single tokens; tiles and frame floors
  // select from the same scores with ATen operations (select_tokens above), then go on fused.
  const bool fused =
      uses_fused_kernels(in) && in.scalar_type() == at::kBFloat16 && cache.out.scalar_type() == at::kBFloat16;
  const auto scores = [&](const at::Tensor& new_sketch) {  // the paper's score, on ATen operations
    const auto delta = (new_sketch - cache.sketch).norm(2, {1});
    return sel.w_lse * cache.lse * delta + sel.w_stale * at::exp(cache.stale);
  };
  const bool reuse_kv = sel.reuse_kv && cache.k.defined();
  OpSequence op(Op::kSelection);
  at::Tensor sketch, idx, xn;
#if ASTRAEA_HAS_TORCH_CUDA
  const auto stream = static_cast<kernels::Stream>(compat::current_stream(in.device()));
  if (fused) {
    // One pass over the input: its sketch (the score's change term) and, unless only the selected
    // tokens are normalised (reused keys and values), the LayerNorm of every token for k and v.
    const auto scale = as_vector(m(1) + 1.0), shift = as_vector(m(0));
    sketch = at::empty({n, kSketchDim}, in.options().dtype(at::kFloat));
    if (!reuse_kv) xn = at::empty({n, d}, in.options());
    kernels::GatherLayerNormArgs pass;
    pass.src = reinterpret_cast<const kernels::bf16*>(in.data_ptr());
    pass.proj = reinterpret_cast<const kernels::bf16*>(sketch_proj_.data_ptr());
    pass.sketch_dim = kSketchDim;
    pass.sketch = sketch.data_ptr<float>();
    pass.mul = scale.data_ptr<float>();
    pass.add = shift.data_ptr<float>();
    pass.out = reuse_kv ? nullptr : reinterpret_cast<kernels::bf16*>(xn.data_ptr());
    pass.rows = n;
    pass.dim = d;
    pass.eps = static_cast<float>(eps);
    kernels::gather_residual_layer_norm(pass, stream);
    if (sel.tile == 1 && sel.min_frame_share == 0) {
      // Score (the paper's: attention log-sum-exp times how far the input moved, plus staleness) and top-k.
      const int64_t want = budget_tokens(budget, n);
      auto score = at::empty({n}, sketch.options());
      idx = at::empty({want}, sketch.options().dtype(at::kLong));
      const size_t ws_bytes = kernels::select_tokens_workspace_bytes(n);
      auto ws = at::empty({static_cast<int64_t>(ws_bytes)}, sketch.options().dtype(at::kByte));
      kernels::select_tokens(
          cache.lse.data_ptr<float>(), sketch.data_ptr<float>(), cache.sketch.data_ptr<float>(), kSketchDim,
          cache.stale.data_ptr<float>(), static_cast<float>(sel.w_lse), static_cast<float>(sel.w_stale), n,
          want, score.data_ptr<float>(), idx.data_ptr<int64_t>(), ws.data_ptr(), ws_bytes, stream);
    } else {
      idx = select_tokens(scores(sketch), budget, sel, rope);
    }
  }
#endif
  at::Tensor x = fused ? at::Tensor() : in.to(at::kFloat);  // the ATen path's float residual stream
  if (!fused) {
    sketch = at::matmul(x, sketch_proj_.to(at::kFloat).t()).contiguous();
    idx = select_tokens(scores(sketch), budget, sel, rope);
  }
  const int64_t k = idx.size(0);
  computed += k;
  // The selected rows of the input, updated by y * gate when y is given (their residual stream, then
  // kept in .h), and normalised: one kernel pass on the fused path.
  struct Gathered {
    at::Tensor h, out;
  };
  const auto gather_norm = [&](const at::Tensor& y, const at::Tensor& gate, const at::Tensor& mul,
                               const at::Tensor& add) {
    Gathered r;
#if ASTRAEA_HAS_TORCH_CUDA
    if (fused) {
      const auto scale = as_vector(mul), shift = as_vector(add), g_vec = as_vector(gate);
      const auto yc = y.defined() ? y.contiguous() : y;
      r.out = at::empty({k, d}, in.options());
      if (y.defined()) r.h = at::empty({k, d}, in.options().dtype(at::kFloat));
      kernels::GatherLayerNormArgs g;
      g.src = reinterpret_cast<const kernels::bf16*>(in.data_ptr());
      g.idx = idx.data_ptr<int64_t>();
      if (y.defined()) g.y = reinterpret_cast<const kernels::bf16*>(yc.data_ptr());
      if (gate.defined()) g.gate = g_vec.data_ptr<float>();
      g.mul = scale.data_ptr<float>();
      g.add = shift.data_ptr<float>();
      if (r.h.defined()) g.h = r.h.data_ptr<float>();
      g.out = reinterpret_cast<kernels::bf16*>(r.out.data_ptr());
      g.rows = k;
      g.dim = d;
      g.eps = static_cast<float>(eps);
      kernels::gather_residual_layer_norm(g, stream);
      return r;
    }
#endif
    r.h = x.index_select(0, idx);
    r.out = residual_layer_norm(r.h, y, gate, mul, add, dtype_, eps);
    return r;
  };

  RopeGrid gathered = rope;
  gathered.positions = idx;
  at::Tensor q, k_all, v_all;
  if (reuse_kv) {
    // Everything for the selected tokens only; the others attend with their cached keys and values.
    op.next(Op::kGather);
    auto xs = gather_norm({}, {}, m(1) + 1.0, m(0)).out;
    op.next(Op::kProjections);
    auto qkv = at::linear(xs, mat(b.qkv_w), mat(b.qkv_b));
    q = rms_norm_rope(qkv.narrow(1, 0, d), b.norm_q, &gathered, heads, eps);
    cache.k.index_copy_(0, idx, rms_norm_rope(qkv.narrow(1, d, d), b.norm_k, &gathered, heads, eps));
    cache.v.index_copy_(0, idx, qkv.narrow(1, 2 * d, d));
    k_all = cache.k;
    v_all = cache.v;
  } else {
    // Keys and values for every token; queries and everything after them for the selected ones.
    if (!fused) {
      op.next(Op::kNorm);
      xn = residual_layer_norm(x, {}, {}, m(1) + 1.0, m(0), dtype_, eps);  // no y: x is only read
    }
    op.next(Op::kProjections);
    auto kv = at::linear(xn, mat(b.qkv_w.narrow(0, d, 2 * d)), mat(b.qkv_b.narrow(0, d, 2 * d)));
    k_all = rms_norm_rope(kv.narrow(1, 0, d), b.norm_k, &rope, heads, eps);
    v_all = kv.narrow(1, d, d);
    op.next(Op::kGather);
    auto xs = xn.index_select(0, idx);
    op.next(Op::kProjections);
    q = rms_norm_rope(at::linear(xs, mat(b.qkv_w.narrow(0, 0, d)), mat(b.qkv_b.narrow(0, 0, d))), b.norm_q, &gathered,
                      heads, eps);
  }
  op.next(Op::kAttention);
  auto attn = attention(q.view({k, heads, hd}), k_all.view({n, heads, hd}), v_all.view({n, heads, hd}), true);
  op.next(Op::kProjections);
  auto y = at::linear(attn.out, mat(b.o_w), mat(b.o_b));

  // The selected tokens' residual stream, gathered and updated by the attention output, then normalised.
  op.next(Op::kGather);
  auto [h, xc] = gather_norm(y, m(2), b.norm3_w, b.norm3_b);
  auto f = cross_attention_ffn(b, h, xc, contexts[0], m(3), m(4), op);

  // The last residual update, written straight into the cache; unselected tokens keep their outputs.
  op.next(Op::kScatter);
#if ASTRAEA_HAS_TORCH_CUDA
  if (fused) {
    const auto lse = attn.lse.contiguous();
    const auto fc = f.contiguous();
    const auto gate = as_vector(m(5));
    kernels::scatter_tokens(h.data_ptr<float>(), reinterpret_cast<const kernels::bf16*>(fc.data_ptr()),
                            gate.data_ptr<float>(), idx.data_ptr<int64_t>(), k, lse.data_ptr<float>(), heads,
                            sketch.data_ptr<float>(), kSketchDim, reinterpret_cast<kernels::bf16*>(cache.out.data_ptr()),
                            cache.lse.data_ptr<float>(), cache.sketch.data_ptr<float>(), cache.stale.data_ptr<float>(),
                            n, d, stream);
    return;
  }
#endif
  residual_layer_norm(h, f, m(5), {}, {}, dtype_, eps, false);
  cache.out.index_copy_(0, idx, h.to(cache.out.scalar_type()));
  cache.lse.index_copy_(0, idx, attn.lse.mean(0));
  cache.sketch.index_copy_(0, idx, sketch.index_select(0, idx));
  cache.stale.add_(1.0).index_fill_(0, idx, 0.0);
}

at::Tensor WanDiT::forward_batch(const at::Tensor& latents, const at::Tensor& timesteps,
                                 const at::Tensor& contexts) const {
  TORCH_CHECK(contexts.dim() == 3 && contexts.size(0) == latents.size(0),
              "forward_batch: ", latents.size(0), " latents need as many contexts");
  auto in = embed_inputs(latents, timesteps);
  RopeGrid rope{in.gf, in.gh, in.gw, inv_freq_, {}};
  at::Tensor x = in.x;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const auto range = ScopedRange::block(static_cast<int64_t>(i));
    dense_block(blocks_[i], x, in.e0, contexts, rope, nullptr);
  }
  return run_head(x, in);
}

at::Tensor WanDiT::forward_tokenwise(const at::Tensor& latents, double timestep, const at::Tensor& context,
                                     double budget, const SelectionParams& selection, TokenEngineState& state) const {
  TORCH_CHECK(budget >= 0.0 && budget <= 1.0, "token budget ", budget, " is not in [0, 1]");
  if (budget == 0.0) {
    TORCH_CHECK(state.last_output.defined(), "a budget-0 step needs an earlier output to reuse");
    return state.last_output;
  }
  TORCH_CHECK(latents.dim() == 4, "latents must be [C, F, H, W], got ", latents.sizes());
  auto t = at::full({1}, timestep, at::TensorOptions().dtype(at::kDouble).device(device()));
  auto in = embed_inputs(latents.unsqueeze(0), t);
  const auto contexts = context.unsqueeze(0);
  RopeGrid rope{in.gf, in.gh, in.gw, inv_freq_, {}};
  const int64_t n = in.x.size(1);
  const bool dense = budget == 1.0 || state.blocks.size() != blocks_.size() ||
                     state.blocks.front().out.size(0) != n;  // first call, or a new size: compute everything
  if (dense) state.blocks.assign(blocks_.size(), BlockTokenCache{});
  at::Tensor x = in.x;
  if (dense) {
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const auto range = ScopedRange::block(static_cast<int64_t>(i));
      dense_block(blocks_[i], x, in.e0, contexts, rope, &state.blocks[i], selection.reuse_kv);
    }
    state.computed_tokens += n * static_cast<int64_t>(blocks_.size());
  } else {
    // Each block reads the cache the block before it has just updated: the residual stream passes
    // between blocks in the cache dtype (bf16 on the GPU), one tensor that nothing copies.
    at::Tensor input = x[0].to(state.blocks.front().out.scalar_type());
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const auto range = ScopedRange::block(static_cast<int64_t>(i));
      sparse_block(blocks_[i], input, in.e0, contexts, rope, budget, selection, state.blocks[i], state.computed_tokens);
      input = state.blocks[i].out;
    }
    x = input.to(at::kFloat).unsqueeze(0);
  }
  state.total_tokens += n * static_cast<int64_t>(blocks_.size());
  state.last_output = run_head(x, in).squeeze(0);
  return state.last_output;
}

int64_t TokenEngineState::bytes() const {
  int64_t total = 0;
  for (const auto& b : blocks) {
    for (const auto* t : {&b.out, &b.lse, &b.sketch, &b.stale, &b.k, &b.v}) total += t->defined() ? static_cast<int64_t>(t->nbytes()) : 0;
  }
  return total;
}

Weights WanDiT::state_dict() const {
  const int64_t d = config_.dim;
  Weights w = embed_;
  w.insert(encoder_.begin(), encoder_.end());
  w["patch_embedding.weight"] =
      embed_.at("patch_embedding.weight").view({d, config_.in_channels, config_.patch[0], config_.patch[1], config_.patch[2]});
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
