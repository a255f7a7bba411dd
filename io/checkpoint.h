// A checkpoint as releases ship it: one safetensors file, or shards listed by a Hugging Face index
// (`NAME.safetensors.index.json`: {"metadata": {...}, "weight_map": {"tensor": "shard file"}}),
// each shard memory-mapped as SafetensorsFile maps one file. Plain C++, no LibTorch.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"

namespace astraea {

class Checkpoint {
 public:
  /// PATH is a .safetensors file, an index (.json), or a folder holding one: the folder's
  /// `diffusion_pytorch_model.safetensors.index.json`, else its `diffusion_pytorch_model.safetensors`
  /// (Wan 2.1's and diffusers' release names), else its only index, else its only .safetensors.
  /// Throws SafetensorsError naming the file and field: an unreadable or malformed index or shard,
  /// a shard that is not beside the index, a mapped tensor its shard lacks, a shard tensor the index
  /// does not map to that shard, or a folder with no checkpoint.
  static Checkpoint open(const std::string& path);

  /// The tensor called NAME, or null when absent.
  const TensorView* find(std::string_view name) const;
  /// The file that holds NAME (the single file, or its shard); PATH when NAME is absent.
  const std::string& file_of(std::string_view name) const;
  /// Every tensor, shard by shard, each in data-offset order.
  std::vector<const TensorView*> tensors() const;
  /// What was opened: the single file, or the index.
  const std::string& path() const { return path_; }
  /// The files whose bytes the checkpoint is: the index first (when sharded), then each shard.
  std::vector<std::string> files() const;
  bool sharded() const { return !index_file_.empty(); }

 private:
  std::string path_, index_file_;
  std::vector<SafetensorsFile> shards_;
};

}  // namespace astraea
