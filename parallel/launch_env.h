// The launch contract: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT), set by torchrun or by `astraea-bench launch`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace astraea::parallel {

struct LaunchEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool launched = false;  ///< WORLD_SIZE was set: the process is one rank of a launch
};

/// Reads the environment through GETENV (null for an unset variable). Without WORLD_SIZE, one
/// process (launched false). A FieldError naming the variable for a value that is not an integer
/// in range, a rank outside [0, WORLD_SIZE), or a missing MASTER_ADDR / MASTER_PORT.
LaunchEnv launch_env(const std::function<const char*(const char*)>& getenv);
/// The same from the process's environment.
LaunchEnv launch_env();

/// A TCP port on 127.0.0.1 that was free when asked (the rendezvous port of a launch). Throws
/// std::runtime_error when none can be had.
int free_local_port();

/// The variables a launcher sets for rank RANK of WORLD ranks on one node.
std::vector<std::pair<std::string, std::string>> launch_variables(int rank, int world,
                                                                  const std::string& addr, int port);

}  // namespace astraea::parallel
