// Wan 2.1's text encoder: the encoder half of umT5-XXL (google/umt5-xxl), as Wan's
// wan/modules/t5.py builds it (T5Encoder, shared_pos=False): pre-RMS-norm blocks, each with its
// own bucketed relative-position bias, unscaled attention and a gated-GELU feed-forward.
// Weights by the official checkpoint's keys (models_t5_umt5-xxl-enc-bf16.pth).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace astraea {

struct Umt5Config {
  int64_t vocab = 256384, dim = 4096, dim_attn = 4096, dim_ffn = 10240, heads = 64, layers = 24;
  int64_t buckets = 32, max_distance = 128;
  int64_t text_len = 512;  ///< the pipeline's token budget (Wan pads and truncates to it)
};

/// T5's bidirectional relative-position bucket of KEY - QUERY positions (t5.py's
/// _relative_position_bucket): exact up to BUCKETS / 4, logarithmic up to MAX_DISTANCE.
int64_t t5_relative_bucket(int64_t relative, int64_t buckets, int64_t max_distance);

/// The sizes WEIGHTS have (umT5-XXL's for the release; smaller ones in tests), read off the
/// embedding, the first block and the number of blocks; max_distance and text_len as given.
/// Throws std::runtime_error naming SOURCE and the tensor it could not read a size from.
Umt5Config umt5_config_of(const std::map<std::string, at::Tensor>& weights, const std::string& source,
                          int64_t text_len = 512);

class Umt5Encoder {
 public:
  /// WEIGHTS by the official keys (token_embedding.weight, blocks.N.{norm1, attn.{q,k,v,o},
  /// norm2, ffn.{gate.0, fc1, fc2}, pos_embedding.embedding}.weight, norm.weight), any float dtype;
  /// kept on DEVICE in DTYPE (bf16 on the GPU, as the official pipeline runs it). Throws
  /// std::runtime_error naming SOURCE and the tensor that is missing, misshaped or unexpected.
  Umt5Encoder(const Umt5Config& config, const std::map<std::string, at::Tensor>& weights,
              const at::Device& device, at::ScalarType dtype, const std::string& source);

  /// The output of every token of IDS (ending with </s>, at most text_len): [len(IDS), dim] float32
  /// on the CPU. Equal to the official encoder's output at those positions for any padding after
  /// them, which its mask hides from every key.
  at::Tensor encode(const std::vector<int64_t>& ids) const;

  const Umt5Config& config() const { return config_; }

 private:
  const at::Tensor& w(const std::string& key) const { return weights_.at(key); }
  Umt5Config config_;
  at::Device device_;
  at::ScalarType dtype_;
  std::map<std::string, at::Tensor> weights_;
};

}  // namespace astraea
