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

/// Width of the input sketch that measures how much a token's block input changed.
constexpr int64_t kSketchDim = 8;

struct TokenEngineState {
  std::vector<BlockTokenCache> blocks;
  at::Tensor last_output;  ///< the last model output (for budget-0 steps)
  int64_t computed_tokens = 0, total_tokens = 0;  ///< block-token computations done / a dense run's

  /// Bytes held by the caches.
  int64_t bytes() const;
};

}  // namespace astraea
