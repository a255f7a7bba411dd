// A command launched as one of several ranks (astraea-bench launch, torchrun): the group it joins,
// the layout it splits the work by, and the model wrapped to split its tokens. Shared by
// generate and profile; rank 0 alone prints and writes.
#pragma once

#include <memory>
#include <string>

#include "model/denoiser.h"
#include "parallel/launch_env.h"
#include "parallel/layout.h"
#include "parallel/process_group.h"

namespace astraea::app {

struct Launched {
  parallel::LaunchEnv env;
  std::shared_ptr<parallel::ProcessGroup>
      world;  ///< null: not launched, or one rank on a device without a group
  parallel::Layout layout;
  parallel::Groups groups;
  bool leader() const { return env.rank == 0; }
  int world_size() const { return world ? world->size() : 1; }
  /// The layout as runs record it ("one rank" when not launched).
  std::string layout_text() const { return layout.text(); }
  /// MODEL with its calls split over this rank's sequence groups (MODEL itself when none).
  std::shared_ptr<const Denoiser> split(std::shared_ptr<const Denoiser> model) const;
};

/// Reads torchrun's environment (a UsageError naming a bad variable); when launched, on DEVICE
/// ("cuda" becomes this rank's "cuda:LOCAL_RANK"), joins the group at world size > 1 or where the
/// device has one, makes the groups of the `--parallel` TEXT for MODEL's heads and GUIDANCE, and
/// on rank 0 prints the layout.
Launched join_launched(const std::string& parallel, const ModelConfig& model, double guidance,
                       std::string& device);

}  // namespace astraea::app
