// A Denoiser whose calls split their tokens over a group of processes (sequence parallelism,
// Denoiser::forward_sequence_parallel): what a launched rank generates with, so that the engine's
// loops, methods and guided step run unchanged on every rank, the token-wise method included.
#pragma once

#include <memory>

#include "model/collective.h"
#include "model/denoiser.h"

namespace astraea::parallel {

/// MODEL with every call (dense and token-wise) split over the ranks of ULYSSES times those of
/// RING (either may be null; model/collective.h: SequenceSplit says which shard is whose).
std::shared_ptr<const Denoiser> sequence_parallel(std::shared_ptr<const Denoiser> model,
                                                  std::shared_ptr<const Collective> ulysses,
                                                  std::shared_ptr<const Collective> ring);

}  // namespace astraea::parallel
