#include "io/atomic_file.h"

#include <filesystem>
#include <fstream>

namespace astraea {

std::string write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return "cannot open";
    out << text;
    if (!out.flush()) {
      out.close();
      std::filesystem::remove(tmp);
      return "write failed";
    }
  }
  std::filesystem::rename(tmp, path);
  return "";
}

}  // namespace astraea
