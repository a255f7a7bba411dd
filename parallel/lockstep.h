// Measurements on several ranks: the timing protocol (profiler/timing.h) decides on its own how
// often to run what (warm-up, rounds until the noise settles, re-timing of budgets caught out of
// order), so that ranks deciding alone would drift apart and hang in their collectives. Rank 0
// decides; before each action it tells the others which, and they follow.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/collective.h"

namespace astraea::parallel {

class Lockstep {
 public:
  /// WORLD: every rank of the run; DEVICE: where its collectives take tensors.
  Lockstep(std::shared_ptr<const Collective> world, c10::Device device);

  /// On rank 0: ACTIONS, each of which first tells the others to run their own copy of it.
  std::vector<std::function<double()>> lead(const std::vector<std::function<double()>>& actions) const;
  /// On rank 0: the others stop following.
  void finish() const;
  /// On the other ranks: runs ACTIONS in the order rank 0 runs them, until it finishes.
  void follow(const std::vector<std::function<double()>>& actions) const;

 private:
  void announce(int64_t action) const;  // -1: finished
  int64_t hear() const;
  std::shared_ptr<const Collective> world_;
  c10::Device device_;
};

/// Every rank's TEXT, in rank order, on every rank (what rank 0 needs of the others' traces).
/// Collective over WORLD; DEVICE as for Lockstep.
std::vector<std::string> gather_text(const Collective& world, const std::string& text, c10::Device device);

}  // namespace astraea::parallel
