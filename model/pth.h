// Reading `torch.save` files (.pth): the zip archive of a pickled state dict and its storages, as
// Wan 2.1's release ships its text encoder and VAE. Through LibTorch's own reader (the one that
// `torch::pickle_load` uses), from the file, never Python.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace astraea {

/// The tensors of the state dict in PATH (a dict of names to tensors, nested dicts flattened with
/// '.'), on the CPU in their stored dtypes. Throws std::runtime_error naming the file: unreadable,
/// not a torch.save zip archive (the legacy format of PyTorch < 1.6 included), or holding
/// something other than a dict of tensors.
std::map<std::string, at::Tensor> read_pth(const std::string& path);

}  // namespace astraea
