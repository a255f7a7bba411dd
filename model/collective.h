// What a model needs from a group of processes to compute one sequence split across them (Ulysses
// sequence parallelism): the collectives, with the tensors' layouts. parallel/ implements it over
// LibTorch's c10d; model/ only holds a pointer to one, so it never names a transport.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace astraea {

/// A group of `size()` processes, this one being `rank()`. Every call is collective: each rank
/// makes it, in the same order, with tensors of the same shape and dtype.
class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// T split along SPLIT_DIM into size() equal parts; part r goes to rank r. Returns the parts
  /// received, in rank order, concatenated along CAT_DIM. SPLIT_DIM's size must divide by size().
  virtual at::Tensor all_to_all(const at::Tensor& t, int64_t split_dim, int64_t cat_dim) const = 0;
  /// T sent to the next rank (r + 1 mod size); returns what the previous one (r - 1) sent: one
  /// step round a ring.
  virtual at::Tensor ring_pass(const at::Tensor& t) const = 0;
  /// Every rank's T, in rank order, concatenated along DIM.
  virtual at::Tensor all_gather(const at::Tensor& t, int64_t dim) const = 0;
  /// T summed over the ranks, in place.
  virtual void all_reduce_sum(at::Tensor& t) const = 0;
  virtual void barrier() const = 0;
};

/// How one sequence's tokens split over ranks (sequence parallelism): Ulysses over ULYSSES's ranks
/// (an all-to-all exchanges heads for tokens around attention; the heads must divide by its
/// size), ring over RING's (keys and values pass round, partial outputs merge by their
/// log-sum-exps; any head count); either may be null. With both (xDiT's USP), the rank at ring
/// position r and Ulysses position u holds token shard r * U + u: each Ulysses group spans
/// consecutive shards, and the ring passes round the groups.
struct SequenceSplit {
  const Collective* ulysses = nullptr;
  const Collective* ring = nullptr;
  int size() const { return (ulysses ? ulysses->size() : 1) * (ring ? ring->size() : 1); }
  /// This rank's token shard.
  int rank() const {
    return (ring ? ring->rank() : 0) * (ulysses ? ulysses->size() : 1) + (ulysses ? ulysses->rank() : 0);
  }
};

}  // namespace astraea
