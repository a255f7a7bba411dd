// WanDiT with the tokens of one sequence split over ranks (model/collective.h: SequenceSplit):
// self-attention across the shards (Ulysses, ring, or both), and the dense and token-wise
// forwards on a shard. Everything else in a block (cross-attention, feed-forward, selection,
// caches) is per token, so it runs on the shard unchanged.
#include <ATen/ATen.h>

#include <stdexcept>
#include <string>

#include "model/block_ops.h"
#include "model/ranges.h"
#include "model/wan/dit.h"
#include "model/wan/dit_parts.h"

namespace astraea {

AttentionResult sequence_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   bool want_lse, const SequenceSplit* split, OpSequence& op) {
  if (!split || split->size() == 1) return attention(q, k, v, want_lse);
  const int64_t bsz = q.size(0), nq = q.size(1), heads = q.size(2), hd = q.size(3);
  const Collective* ulysses = split->ulysses;
  const Collective* ring = split->ring;
  at::Tensor qs = q, ks = k, vs = v;
  if (ulysses) {
    op.next(Op::kComm);
    // [B, n, H, hd] of this rank's tokens -> [B, U n, H / U, hd] of its Ulysses group's tokens.
    // One exchange carries q, k and v when they have the same tokens (dense), two otherwise.
    if (q.size(1) == k.size(1)) {
      const auto all = ulysses->all_to_all(at::stack({q, k, v}), 3, 2);
      qs = all[0];
      ks = all[1];
      vs = all[2];
    } else {
      qs = ulysses->all_to_all(q, 2, 1);
      const auto kv = ulysses->all_to_all(at::stack({k, v}), 3, 2);
      ks = kv[0];
      vs = kv[1];
    }
    op.next(Op::kAttention);
  }
  const int64_t local_heads = qs.size(2);
  at::Tensor out, lse;  // out [B, nq', H', hd], lse [B, H', nq']
  if (ring) {
    // Keys and values pass round the ring; each step's partial output merges into the softmax
    // over every key seen so far by the log-sum-exps.
    auto kv = at::stack({ks, vs}).contiguous();
    at::Tensor acc, acc_lse;
    for (int s = 0; s < ring->size(); ++s) {
      const auto part = attention(qs, kv[0], kv[1], true);
      const auto o = part.out.to(at::kFloat).view({bsz, -1, local_heads, hd});
      const auto l = part.lse.transpose(1, 2).unsqueeze(-1);  // [B, nq', H', 1]
      if (s == 0) {
        acc = o;
        acc_lse = l;
      } else {
        const auto m = at::logaddexp(acc_lse, l);
        acc = acc * (acc_lse - m).exp() + o * (l - m).exp();
        acc_lse = m;
      }
      if (s + 1 < ring->size()) {
        op.next(Op::kComm);
        kv = ring->ring_pass(kv);
        op.next(Op::kAttention);
      }
    }
    out = acc.to(q.scalar_type());
    lse = acc_lse.squeeze(-1).transpose(1, 2);
  } else {
    auto part = attention(qs, ks, vs, want_lse);
    out = part.out.view({bsz, -1, local_heads, hd});
    lse = part.lse;
  }
  if (ulysses) {
    op.next(Op::kComm);
    out = ulysses->all_to_all(out, 1, 2);                             // back to [B, nq, H, hd]
    if (want_lse) lse = ulysses->all_to_all(lse.contiguous(), 2, 1);  // [B, H, nq]
    op.next(Op::kAttention);                                          // the caller moves on from attention
  }
  return {out.reshape({bsz, nq, heads * hd}), want_lse ? lse.contiguous() : at::Tensor()};
}

namespace {

// Every rank's shard of X along DIM, in shard order: within each Ulysses group, then round the ring.
at::Tensor gather_tokens(const at::Tensor& x, int64_t dim, const SequenceSplit& split) {
  const ScopedRange range(Op::kComm);
  at::Tensor all = split.ulysses ? split.ulysses->all_gather(x, dim) : x;
  return split.ring ? split.ring->all_gather(all, dim) : all;
}

}  // namespace

void WanDiT::take_shard(at::Tensor& x, RopeGrid& rope, const SequenceSplit& split) const {
  const int64_t p = split.size(), tokens = x.size(1);
  const int64_t u = split.ulysses ? split.ulysses->size() : 1;
  if (config_.heads % u != 0) {
    throw std::invalid_argument("sequence parallelism over " + std::to_string(u) +
                                " ranks needs heads divisible by " + std::to_string(u) + "; " + config_.name +
                                " has " + std::to_string(config_.heads));
  }
  if (tokens % p != 0) {
    throw std::invalid_argument("sequence parallelism over " + std::to_string(p) +
                                " ranks needs a token count divisible by " + std::to_string(p) +
                                "; this video has " + std::to_string(tokens));
  }
  const int64_t n = tokens / p, first = split.rank() * n;
  rope.positions = at::arange(first, first + n, x.options().dtype(at::kLong));
  x = x.narrow(1, first, n).contiguous();
}

at::Tensor WanDiT::forward_sequence_parallel(const at::Tensor& latents, const at::Tensor& timesteps,
                                             const at::Tensor& contexts, const SequenceSplit& split) const {
  TORCH_CHECK(contexts.dim() == 3 && contexts.size(0) == latents.size(0),
              "forward_sequence_parallel: ", latents.size(0), " latents need as many contexts");
  auto in = embed_inputs(latents, timesteps);
  RopeGrid rope{in.gf, in.gh, in.gw, inv_freq_, {}};
  at::Tensor x = in.x;
  take_shard(x, rope, split);
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const auto range = ScopedRange::block(static_cast<int64_t>(i));
    dense_block(blocks_[i], x, in.e0, contexts, rope, nullptr, false, &split);
  }
  x = gather_tokens(x, 1, split);  // the head (norm, projection, unpatchify) on every token
  return run_head(x, in);
}

at::Tensor WanDiT::forward_tokenwise(const at::Tensor& latents, double timestep, const at::Tensor& context,
                                     double budget, const SelectionParams& selection,
                                     TokenEngineState& state) const {
  return tokenwise(latents, timestep, context, budget, selection, state, nullptr);
}

at::Tensor WanDiT::forward_tokenwise_sequence_parallel(const at::Tensor& latents, double timestep,
                                                       const at::Tensor& context, double budget,
                                                       const SelectionParams& selection,
                                                       TokenEngineState& state,
                                                       const SequenceSplit& split) const {
  return tokenwise(latents, timestep, context, budget, selection, state, &split);
}

at::Tensor WanDiT::tokenwise(const at::Tensor& latents, double timestep, const at::Tensor& context,
                             double budget, const SelectionParams& selection, TokenEngineState& state,
                             const SequenceSplit* split) const {
  TORCH_CHECK(budget >= 0.0 && budget <= 1.0, "token budget ", budget, " is not in [0, 1]");
  if (budget == 0.0) {
    TORCH_CHECK(state.last_output.defined(), "a budget-0 step needs an earlier output to reuse");
    return state.last_output;
  }
  TORCH_CHECK(latents.dim() == 4, "latents must be [C, F, H, W], got ", latents.sizes());
  const int64_t ranks = split ? split->size() : 1;
  if (selection.segments < 1 || (selection.segments > 1 && selection.segments % ranks != 0)) {
    throw std::invalid_argument("selection segments " + std::to_string(selection.segments) +
                                " must be 1 or a multiple of the " + std::to_string(ranks) +
                                " ranks the tokens split over");
  }
  auto t = at::full({1}, timestep, at::TensorOptions().dtype(at::kDouble).device(device()));
  auto in = embed_inputs(latents.unsqueeze(0), t);
  const auto contexts = context.unsqueeze(0);
  RopeGrid rope{in.gf, in.gh, in.gw, inv_freq_, {}};
  at::Tensor x = in.x;
  if (split) take_shard(x, rope, *split);
  const int64_t n = x.size(1);
  const bool dense = budget == 1.0 || state.blocks.size() != blocks_.size() ||
                     state.blocks.front().out.size(0) != n;  // first call, or a new size: compute everything
  if (dense) state.blocks.assign(blocks_.size(), BlockTokenCache{});
  // The stack's input, for its residual: the dense blocks update x (and so in.x) in place.
  const at::Tensor x0 = !split && dense ? in.x.clone() : in.x;
  if (dense) {
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const auto range = ScopedRange::block(static_cast<int64_t>(i));
      dense_block(blocks_[i], x, in.e0, contexts, rope, &state.blocks[i], selection.reuse_kv, split);
    }
    state.computed_tokens += n * static_cast<int64_t>(blocks_.size());
  } else {
    // Each block reads the cache the block before it has just updated: the residual stream passes
    // between blocks in the cache dtype (bf16 on the GPU), one tensor that nothing copies.
    at::Tensor input = x[0].to(state.blocks.front().out.scalar_type());
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const auto range = ScopedRange::block(static_cast<int64_t>(i));
      sparse_block(blocks_[i], input, in.e0, contexts, rope, budget, selection, state.blocks[i],
                   state.computed_tokens, split);
      input = state.blocks[i].out;
    }
    x = input.to(at::kFloat).unsqueeze(0);
  }
  state.total_tokens += n * static_cast<int64_t>(blocks_.size());
  if (!split) state.stack_residual = x - x0;
  if (split) x = gather_tokens(x, 1, *split);
  state.last_output = run_head(x, in).squeeze(0);
  return state.last_output;
}

}  // namespace astraea
