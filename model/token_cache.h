// What the token-wise engine keeps between steps, per sequence (one for the conditional and one
// for the unconditional branch of a guided run).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace astraea {

/// One block's cache. Memory: one token tensor in the model dtype, plus 10 floats a token
/// (docs/schedule.md explains the sketch that stands in for a second token tensor).
struct BlockTokenCache {
  at::Tensor out;     ///< [N, D]: the block's output at each token's last computation
  at::Tensor lse;     ///< [N] float: the token's attention log-sum-exp then, mean over heads
  at::Tensor sketch;  ///< [N, kSketchDim] float: a fixed random projection of the block input then
  at::Tensor stale;   ///< [N] float: consecutive steps the token has not been computed
  at::Tensor k, v;    ///< [N, D] keys (normed, rotated) and values, only with SelectionParams::reuse_kv
};

/// How each block picks its tokens (docs/schedule.md): score_i = w_lse * lse_i * delta_i
/// + w_stale * exp(stale_i), top ceil(budget * N).
struct SelectionParams {
  double w_lse = 1.0;          ///< weight of attention log-sum-exp times input change
  double w_stale = 0.1;        ///< weight of the staleness term
  int64_t tile = 1;            ///< select runs of this many consecutive tokens (1: single tokens)
  double min_frame_share = 0;  ///< every frame keeps at least this share of its tokens fresh
  bool reuse_kv = false;       ///< unselected tokens keep cached keys and values too (two more token tensors)
  /// The top-k runs separately over this many equal runs of consecutive tokens, ceil(budget * N /
  /// segments) each: what a run whose tokens split over that many ranks selects, so one process
  /// can reproduce (and tune for) a sequence-parallel deployment.
  int64_t segments = 1;
  bool operator==(const SelectionParams& o) const {
    return w_lse == o.w_lse && w_stale == o.w_stale && tile == o.tile &&
           min_frame_share == o.min_frame_share && reuse_kv == o.reuse_kv && segments == o.segments;
  }
};

/// Width of the input sketch that measures how much a token's block input changed.
constexpr int64_t kSketchDim = 8;

struct TokenEngineState {
  std::vector<BlockTokenCache> blocks;
  at::Tensor last_output;                         ///< the last model output (for budget-0 steps)
  /// What the block stack added to its input at the last call that ran it, [1, N, D] float32 (one
  /// process only): what a reusing step (kReuseBudget) stands in for the blocks with.
  at::Tensor stack_residual;
  int64_t computed_tokens = 0, total_tokens = 0;  ///< block-token computations done / a dense run's

  /// Bytes held by the caches.
  int64_t bytes() const;
};

}  // namespace astraea
