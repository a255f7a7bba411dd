#include "io/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace astraea {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The checkpoint a release folder holds, by the rules Checkpoint::open names.
std::string in_folder(const fs::path& dir) {
  std::error_code ignored;  // a path that cannot be examined counts as absent
  for (const char* name :
       {"diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors"}) {
    if (fs::is_regular_file(dir / name, ignored)) return (dir / name).string();
  }
  std::vector<std::string> indexes, files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    if (ends_with(name, ".safetensors.index.json")) indexes.push_back(e.path().string());
    if (ends_with(name, ".safetensors")) files.push_back(e.path().string());
  }
  if (ec) throw SafetensorsError(dir.string() + ": cannot list the folder: " + ec.message());
  if (indexes.size() == 1) return indexes.front();
  if (indexes.empty() && files.size() == 1) return files.front();
  throw SafetensorsError(dir.string() + ": no diffusion_pytorch_model.safetensors(.index.json), and " +
                         std::to_string(indexes.size()) + " indexes and " + std::to_string(files.size()) +
                         " .safetensors files to choose from (pass the file itself)");
}

// The index's weight_map: tensor name -> shard file name, each a plain name beside the index.
std::map<std::string, std::string> read_weight_map(const std::string& index) {
  std::ifstream in(index);
  if (!in) throw SafetensorsError(index + ": cannot be read");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw SafetensorsError(index + ": not JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw SafetensorsError(index + ": field 'weight_map' is missing or not an object");
  std::map<std::string, std::string> map;
  for (const auto& [name, shard] : j["weight_map"].items()) {
    if (!shard.is_string() || shard.get<std::string>().empty())
      throw SafetensorsError(index + ": weight_map['" + name + "'] is not a file name");
    const auto file = shard.get<std::string>();
    if (file.find('/') != std::string::npos || file == "." || file == "..")
      throw SafetensorsError(index + ": weight_map['" + name + "'] names '" + file +
                             "', not a file beside the index");
    map[name] = file;
  }
  if (map.empty()) throw SafetensorsError(index + ": field 'weight_map' maps no tensor");
  return map;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  std::string file = path;
  std::error_code ignored;
  if (fs::is_directory(path, ignored)) file = in_folder(path);
  Checkpoint c;
  c.path_ = file;
  if (!ends_with(file, ".json")) {
    c.shards_.push_back(SafetensorsFile::open(file));
    return c;
  }
  c.index_file_ = file;
  const auto map = read_weight_map(file);
  std::map<std::string, std::set<std::string>> by_shard;  // shard file -> the tensors mapped to it
  for (const auto& [name, shard] : map) by_shard[shard].insert(name);
  const auto dir = fs::path(file).parent_path();
  for (const auto& [shard, names] : by_shard) {
    const auto shard_path = (dir / shard).string();
    if (!fs::exists(shard_path, ignored))
      throw SafetensorsError(file + ": shard '" + shard + "' (of tensor '" + *names.begin() +
                             "') is missing");
    auto f = SafetensorsFile::open(shard_path);
    for (const auto& name : names) {
      if (!f.find(name))
        throw SafetensorsError(file + ": tensor '" + name + "' is mapped to " + shard_path +
                               ", which lacks it");
    }
    for (const auto& t : f.tensors()) {
      if (!names.count(t.name))
        throw SafetensorsError(shard_path + ": tensor '" + t.name + "' is not mapped to this shard by " +
                               file);
    }
    c.shards_.push_back(std::move(f));
  }
  return c;
}

const TensorView* Checkpoint::find(std::string_view name) const {
  for (const auto& s : shards_) {
    if (const TensorView* t = s.find(name)) return t;
  }
  return nullptr;
}

const std::string& Checkpoint::file_of(std::string_view name) const {
  for (const auto& s : shards_) {
    if (s.find(name)) return s.path();
  }
  return path_;
}

std::vector<const TensorView*> Checkpoint::tensors() const {
  std::vector<const TensorView*> all;
  for (const auto& s : shards_) {
    for (const auto& t : s.tensors()) all.push_back(&t);
  }
  return all;
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> files;
  if (sharded()) files.push_back(index_file_);
  for (const auto& s : shards_) files.push_back(s.path());
  return files;
}

}  // namespace astraea
