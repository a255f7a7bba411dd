// The seam of the step-caching methods (TeaCache, MagCache, First-Block Cache, PAB): a model call
// that shows a policy the block stack as it runs, and lets it stand in for the rest of the stack,
// or for a block's attention outputs, with what it kept from an earlier call. The policy is the
// method's (engine/); the model only asks it, so a family implements one loop for all of them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

namespace astraea {

/// Where the stack stands before a block runs.
struct StackPoint {
  int64_t block = 0;  ///< the block about to run, 0 .. layers - 1
  at::Tensor x;       ///< its input: the float32 residual stream [1, N, D]
  at::Tensor e;       ///< the timestep embedding [1, D] (what the head is modulated by)
  at::Tensor e0;      ///< the timestep's modulation vectors of every block [1, 6, D]
  /// The block's timestep-modulated input LN(x) * (1 + scale) + shift [1, N, D] float32, made on demand.
  std::function<at::Tensor()> modulated;
};

/// What one block reuses at a call. PAB: a kept attention output instead of computing it (and
/// computing it keeps it). ToCa (`tokenwise`): the block also keeps its feed-forward output and
/// each token's cross-attention entropy; with `fresh` given, cross-attention and the feed-forward
/// run on those tokens only, the others keep their outputs.
struct BlockReuse {
  bool self = false, cross = false;  ///< reuse the kept self- / cross-attention output
  at::Tensor self_out, cross_out;    ///< [1, N, D]: the outputs of the block's last computation
  bool tokenwise = false;            ///< keep ffn_out and entropy too (ToCa)
  at::Tensor fresh;                  ///< [k] long, ascending: the tokens to compute (undefined: all)
  at::Tensor ffn_out;                ///< [1, N, D]: the feed-forward output at each token's last computation
  /// [N] float32: the entropy of each token's cross-attention over the text (mean map over heads)
  /// at its last computation
  at::Tensor entropy;
};

class StackPolicy {
 public:
  virtual ~StackPolicy() = default;
  /// Before each block: an undefined tensor computes it; a residual R stands in for it and every
  /// block after it (their output is taken as p.x + R, and no later block is asked).
  virtual at::Tensor before_block(const StackPoint& p) = 0;
  /// After the last block, when every block ran: the stack's output [1, N, D] float32.
  virtual void after_stack(const at::Tensor& x) = 0;
  /// Block I's attention broadcast, or null to compute both of its attentions.
  virtual BlockReuse* attention(int64_t block) {
    (void)block;
    return nullptr;
  }
};

}  // namespace astraea
