#include "apps/provenance.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "apps/commands.h"
#include "engine/generate.h"
#include "io/checkpoint.h"
#include "io/fnv1a.h"
#include "model/text_context.h"

namespace astraea::app {
namespace {

std::string run_git(const std::string& args) {
  const std::string cmd = "git -C '" + std::string(ASTRAEA_SOURCE_DIR) + "' " + args + " 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return "";
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, pipe.get())) out += buf;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

std::string git_revision() {
  static const std::string revision = [] {
    std::string rev = run_git("rev-parse --short=12 HEAD");
    if (rev.empty()) return std::string("unknown");
    if (!run_git("status --porcelain --untracked-files=no").empty()) rev += "-dirty";
    return rev;
  }();
  return revision;
}

namespace {
std::string& stored_command_line() {
  static std::string line;
  return line;
}
}  // namespace

void set_command_line(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) {
    std::string a = i == 0 ? "astraea-bench" : argv[i];
    const bool plain = !a.empty() && a.find_first_of(" \t'\"$\\;&|<>()*?") == std::string::npos;
    if (!plain) {
      std::string q = "'";
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      a = q + "'";
    }
    line += (i ? " " : "") + a;
  }
  stored_command_line() = line;
}

const std::string& command_line() { return stored_command_line(); }

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    if (end > start) items.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

std::vector<double> parse_number_list(const std::string& flag, const std::string& text, double lo, double hi) {
  std::vector<double> values;
  for (const auto& item : split_list(text)) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (end == item.c_str() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi) {
      char range[64];
      std::snprintf(range, sizeof range, "a number in [%g, %g]", lo, hi);
      throw UsageError(flag + " item '" + item + "' is not " + range);
    }
    values.push_back(v);
  }
  if (values.empty()) throw UsageError(flag + " is empty");
  return values;
}

namespace {

uint64_t digest_into(const std::string& path, const std::string& flag, uint64_t h) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(flag + " " + path + " cannot be read");
  std::vector<char> buffer(1 << 20);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    h = fnv1a(buffer.data(), static_cast<size_t>(in.gcount()), h);
  }
  return h;
}

std::string hex(uint64_t h) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

}  // namespace

std::string file_digest(const std::string& path, const std::string& flag) {
  if (path.empty()) return {};
  return hex(digest_into(path, flag, kFnv1aBasis));
}

std::string weights_digest(const std::string& model, const std::string& weights) {
  GenerateOptions o;
  o.model = model;
  o.weights = weights;
  const auto path = weights_file(o);
  if (path.empty()) return {};
  std::vector<std::string> files;
  try {
    files = Checkpoint::open(path).files();  // a sharded checkpoint: its index, then every shard
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {  // a release folder: its umT5 decides the text too
      const auto text = release_text_files(path);
      files.push_back(text.weights);
      files.push_back(text.tokenizer);
    }
  } catch (const std::runtime_error& e) {  // a malformed checkpoint, a release missing a file
    throw UsageError("--weights " + std::string(e.what()));
  }
  uint64_t h = kFnv1aBasis;
  for (const auto& f : files) h = digest_into(f, "--weights", h);
  return hex(h);
}

}  // namespace astraea::app
