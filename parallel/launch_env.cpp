#include "parallel/launch_env.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/field_error.h"

namespace astraea::parallel {
namespace {

int integer(const std::function<const char*(const char*)>& getenv, const char* name, int lo, int hi,
            int fallback) {
  const char* text = getenv(name);
  if (!text) return fallback;
  const std::string s = text;
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.empty() || used != s.size() || v < lo || v > hi) {
    throw FieldError(
        name, "'" + s + "' is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(v);
}

}  // namespace

LaunchEnv launch_env(const std::function<const char*(const char*)>& getenv) {
  LaunchEnv e;
  if (!getenv("WORLD_SIZE")) return e;
  e.launched = true;
  e.world_size = integer(getenv, "WORLD_SIZE", 1, 4096, 1);
  e.rank = integer(getenv, "RANK", 0, e.world_size - 1, -1);
  if (e.rank < 0) throw FieldError("RANK", "is not set, but WORLD_SIZE is");
  e.local_world_size = integer(getenv, "LOCAL_WORLD_SIZE", 1, e.world_size, e.world_size);
  e.local_rank = integer(getenv, "LOCAL_RANK", 0, e.local_world_size - 1, e.rank % e.local_world_size);
  if (e.world_size > 1) {
    const char* addr = getenv("MASTER_ADDR");
    if (!addr || !*addr)
      throw FieldError("MASTER_ADDR", "is not set, but WORLD_SIZE is " + std::to_string(e.world_size));
    e.master_addr = addr;
    if (!getenv("MASTER_PORT"))
      throw FieldError("MASTER_PORT", "is not set, but WORLD_SIZE is " + std::to_string(e.world_size));
  }
  e.master_port = integer(getenv, "MASTER_PORT", 1, 65535, e.master_port);
  return e;
}

LaunchEnv launch_env() {
  return launch_env([](const char* name) { return static_cast<const char*>(std::getenv(name)); });
}

int free_local_port() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = s >= 0 && bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  const int error = errno;
  if (s >= 0) close(s);
  if (!ok) throw std::runtime_error(std::string("no free port on 127.0.0.1: ") + std::strerror(error));
  return ntohs(a.sin_port);
}

std::vector<std::pair<std::string, std::string>> launch_variables(int rank, int world,
                                                                  const std::string& addr, int port) {
  return {{"RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(world)},
          {"LOCAL_RANK", std::to_string(rank)},
          {"LOCAL_WORLD_SIZE", std::to_string(world)},
          {"GROUP_RANK", "0"},
          {"MASTER_ADDR", addr},
          {"MASTER_PORT", std::to_string(port)}};
}

}  // namespace astraea::parallel
