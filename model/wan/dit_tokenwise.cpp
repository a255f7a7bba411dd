// WanDiT's token-wise forward (docs/schedule.md): each block scores its tokens, computes the top
// share, and leaves the rest at their cached outputs; on the GPU through the fused kernels.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/residual_layer_norm.cuh"
#include "kernels/token_scatter.cuh"
#include "kernels/token_select.cuh"
#include "model/block_ops.h"
#include "model/ranges.h"
#include "model/torch_compat.h"
#include "model/wan/dit.h"
#include "model/wan/dit_parts.h"

namespace astraea {
namespace {

// The tokens a block computes: the top ceil(budget * N) by score, in runs of `tile` consecutive
// tokens when tiled (a tile scores as its best token), with at least `min_frame_share` of every frame's
// tokens among them. Ascending indices, so gathers read memory in order.
// How many of n tokens a budget computes: ceil(budget * n), at least one.
int64_t budget_tokens(double budget, int64_t n) {
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(budget * static_cast<double>(n))), 1, n);
}

// SCORE holds tokens FIRST .. FIRST + n - 1 of the grid; a frame floor needs them to be whole frames.
at::Tensor select_tokens(const at::Tensor& score, double budget, const SelectionParams& sel,
                         const RopeGrid& grid, int64_t first) {
  const int64_t n = score.size(0);
  const int64_t k = budget_tokens(budget, n);
  at::Tensor s = score;
  const int64_t per_frame = grid.height * grid.width;
  if (sel.min_frame_share > 0 && (first % per_frame != 0 || n % per_frame != 0)) {
    throw std::invalid_argument(
        "min_frame_share needs each selection segment (or rank) to hold whole frames; its " +
        std::to_string(n) + " tokens from token " + std::to_string(first) +
        " are not a multiple of a frame's " + std::to_string(per_frame));
  }
  if (sel.min_frame_share > 0) {
    // Each frame's best tokens jump the queue: a bonus above every score.
    const int64_t frames = n / per_frame;
    const int64_t m = std::min<int64_t>(
        per_frame, static_cast<int64_t>(std::ceil(sel.min_frame_share * static_cast<double>(per_frame))));
    auto frame_top = std::get<1>(score.view({frames, per_frame}).topk(m, 1));
    auto base = at::arange(frames, frame_top.options()).mul_(per_frame).unsqueeze(1);
    s = score.clone();
    // The bonus stays on the device: reading the maximum back would stall every block on the host.
    const auto bonus = (score.abs().max() + 1.0).mul_(2.0).expand({frames * m});
    s.index_add_(0, (frame_top + base).flatten(), bonus);
  }
  if (sel.tile > 1) {
    const int64_t tiles = (n + sel.tile - 1) / sel.tile;
    auto padded = at::constant_pad_nd(s, {0, tiles * sel.tile - n}, -1e30);
    auto tile_score = padded.view({tiles, sel.tile}).amax(1);
    const int64_t kt = std::min<int64_t>(tiles, (k + sel.tile - 1) / sel.tile);
    auto chosen = std::get<1>(tile_score.topk(kt, 0, true, false));
    auto idx =
        (chosen.unsqueeze(1) * sel.tile + at::arange(sel.tile, chosen.options()).unsqueeze(0)).flatten();
    // Only a padded last tile reaches past n; masking waits for the device, so skip it when none can.
    if (tiles * sel.tile != n) idx = idx.masked_select(idx < n);
    return std::get<0>(idx.sort());
  }
  return std::get<0>(std::get<1>(at::topk(s, k, 0, true, false)).sort());
}

// select_tokens on each of SEGMENTS equal runs of SCORE's tokens (SelectionParams::segments), the
// indices in one ascending list.
at::Tensor select_segments(const at::Tensor& score, double budget, const SelectionParams& sel,
                           const RopeGrid& grid, int64_t first, int64_t segments) {
  if (segments == 1) return select_tokens(score, budget, sel, grid, first);
  const int64_t n = score.size(0), m = n / segments;
  if (n % segments != 0) {
    throw std::invalid_argument("selection segments " + std::to_string(segments) + " do not divide the " +
                                std::to_string(n) + " tokens");
  }
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < segments; ++s)
    parts.push_back(select_tokens(score.narrow(0, s * m, m), budget, sel, grid, first + s * m).add_(s * m));
  return at::cat(parts);
}

}  // namespace

void WanDiT::sparse_block(const Block& b, const at::Tensor& in, const at::Tensor& e0,
                          const at::Tensor& contexts, const RopeGrid& rope, double budget,
                          const SelectionParams& sel, BlockTokenCache& cache, int64_t& computed,
                          const SequenceSplit* split) const {
  const int64_t n = in.size(0), d = config_.dim, heads = config_.heads, hd = config_.head_dim();
  // Under sequence parallelism this rank selects among its shard, as one of sel.segments runs.
  const int64_t ranks = split ? split->size() : 1, first = split ? split->rank() * n : 0;
  const int64_t segments = std::max<int64_t>(1, sel.segments / ranks);
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
    if (sel.tile == 1 && sel.min_frame_share == 0 && segments == 1) {
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
      idx = select_segments(scores(sketch), budget, sel, rope, first, segments);
    }
  }
#endif
  at::Tensor x = fused ? at::Tensor() : in.to(at::kFloat);  // the ATen path's float residual stream
  if (!fused) {
    sketch = at::matmul(x, sketch_proj_.to(at::kFloat).t()).contiguous();
    idx = select_segments(scores(sketch), budget, sel, rope, first, segments);
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

  RopeGrid gathered = rope;  // the selected tokens' places in the grid
  gathered.positions = rope.positions.defined() ? rope.positions.index_select(0, idx) : idx;
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
    q = rms_norm_rope(at::linear(xs, mat(b.qkv_w.narrow(0, 0, d)), mat(b.qkv_b.narrow(0, 0, d))), b.norm_q,
                      &gathered, heads, eps);
  }
  op.next(Op::kAttention);
  auto attn =
      split ? sequence_attention(q.view({1, k, heads, hd}), k_all.view({1, n, heads, hd}),
                                 v_all.view({1, n, heads, hd}), true, split, op)
            : attention(q.view({k, heads, hd}), k_all.view({n, heads, hd}), v_all.view({n, heads, hd}), true);
  if (split) attn = {attn.out[0], attn.lse[0]};
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
    kernels::scatter_tokens(
        h.data_ptr<float>(), reinterpret_cast<const kernels::bf16*>(fc.data_ptr()), gate.data_ptr<float>(),
        idx.data_ptr<int64_t>(), k, lse.data_ptr<float>(), heads, sketch.data_ptr<float>(), kSketchDim,
        reinterpret_cast<kernels::bf16*>(cache.out.data_ptr()), cache.lse.data_ptr<float>(),
        cache.sketch.data_ptr<float>(), cache.stale.data_ptr<float>(), n, d, stream);
    return;
  }
#endif
  residual_layer_norm(h, f, m(5), {}, {}, dtype_, eps, false);
  cache.out.index_copy_(0, idx, h.to(cache.out.scalar_type()));
  cache.lse.index_copy_(0, idx, attn.lse.mean(0));
  cache.sketch.index_copy_(0, idx, sketch.index_select(0, idx));
  cache.stale.add_(1.0).index_fill_(0, idx, 0.0);
}

int64_t TokenEngineState::bytes() const {
  int64_t total = 0;
  for (const auto& b : blocks) {
    for (const auto* t : {&b.out, &b.lse, &b.sketch, &b.stale, &b.k, &b.v})
      total += t->defined() ? static_cast<int64_t>(t->nbytes()) : 0;
  }
  return total;
}

}  // namespace astraea
