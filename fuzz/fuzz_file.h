// What every fuzz target shares: the input as a file, since the parsers read files (mapped, or
// through FFmpeg and SQLite), on /dev/shm where there is one so that each run costs no disk.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace astraea::fuzz {

/// Writes DATA to this process's scratch file with SUFFIX (".safetensors", ".db", ...) and returns
/// its path; the next call overwrites it.
inline std::string as_file(const uint8_t* data, size_t size, const std::string& suffix) {
  static const std::string dir = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  const std::string path = dir + "/astraea_fuzz_" + std::to_string(::getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace astraea::fuzz
