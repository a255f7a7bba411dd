// A Denoiser whose calls split their tokens over a group of processes (Ulysses sequence
// parallelism, Denoiser::forward_sequence_parallel): what a launched rank generates with, so that
// the engine's loops, methods and guided step run unchanged on every rank.
#pragma once

#include <memory>

#include "model/collective.h"
#include "model/denoiser.h"

namespace astraea::parallel {

/// MODEL with every call split over GROUP's ranks, self-attention by HOW. The token-wise forward
/// is refused (not built under sequence parallelism yet), so ASTRAEA's method fails with that said.
std::shared_ptr<const Denoiser> sequence_parallel(
    std::shared_ptr<const Denoiser> model, std::shared_ptr<const Collective> group,
    Denoiser::SequenceAttention how = Denoiser::SequenceAttention::kUlysses);

}  // namespace astraea::parallel
