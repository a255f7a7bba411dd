#include "apps/launched.h"

#include <cstdio>

#include "apps/commands.h"
#include "engine/generate.h"
#include "io/field_error.h"
#include "parallel/sequence_parallel.h"

namespace astraea::app {

std::shared_ptr<const Denoiser> Launched::split(std::shared_ptr<const Denoiser> model) const {
  if (!groups.ulysses && !groups.ring) return model;
  return parallel::sequence_parallel(std::move(model), groups.ulysses, groups.ring);
}

Launched join_launched(const std::string& parallel, const ModelConfig& model, double guidance,
                       std::string& device) {
  Launched l;
  try {
    l.env = parallel::launch_env();
  } catch (const FieldError& e) {
    throw UsageError("environment variable " + std::string(e.what()));
  }
  if (l.env.launched && device == "cuda") device = "cuda:" + std::to_string(l.env.local_rank);
  // At world size 1 too, where the device has a group: joined, the layout "one rank". The world
  // group lives as long as the run (rank 0's holds the rendezvous the subgroups share).
  if (!l.env.launched || (l.env.world_size == 1 && !parallel::has_group_for(parse_device(device)))) return l;
  l.layout =
      parallel::parse_layout(parallel, l.env.world_size, static_cast<int>(model.heads), guidance != 1.0);
  l.world = parallel::ProcessGroup::join(l.env, parse_device(device));
  l.groups = parallel::make_groups(*l.world, l.layout);
  if (l.leader()) {
    std::printf("parallel: %s on %d ranks (%s)\n", l.layout.text().c_str(), l.env.world_size,
                l.world->backend().c_str());
    std::fflush(stdout);  // seen at once in a log file, not at exit
  }
  return l;
}

}  // namespace astraea::app
