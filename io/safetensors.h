// The safetensors file format, read through mmap and written atomically, without LibTorch.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON header, then the data block.
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}, the
// offsets counting from the start of the data block; the optional "__metadata__" entry maps
// strings to strings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace astraea {

/// Element types we read and write; the names match the format's "dtype" strings.
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// Bytes per element of DTYPE.
size_t dtype_size(DType dtype);
/// The format's spelling of DTYPE: "F32", "BF16", "BOOL", ...
std::string_view dtype_name(DType dtype);
/// The DType spelled NAME in the format, or nullopt when it is not one of ours.
std::optional<DType> dtype_from_name(std::string_view name);

/// A malformed, unreadable or unwritable file; the message names the file, then the tensor or field.
class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One tensor of an open file. DATA points into the mapping and is only as aligned as the file
/// made it (the format packs tensors back to back): memcpy out rather than casting.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;  ///< Empty for a scalar.
  const std::byte* data;
  size_t nbytes;
  /// Number of elements: the product of SHAPE (1 for a scalar).
  int64_t numel() const;
};

/// A safetensors file mapped read-only and validated on open. The views stay valid while this
/// object (or the one it was moved into) lives.
class SafetensorsFile {
 public:
  /// Maps PATH and checks every header entry; throws SafetensorsError on any inconsistency.
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&&) = default;
  SafetensorsFile& operator=(SafetensorsFile&&) = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  /// The tensor called NAME, or null when absent.
  const TensorView* find(std::string_view name) const;
  /// The tensor called NAME; throws SafetensorsError "FILE: no tensor 'NAME'" when absent.
  const TensorView& at(std::string_view name) const;
  /// All tensors, in data-offset order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  /// The "__metadata__" entry (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// The path the file was opened from.
  const std::string& path() const { return path_; }

 private:
  struct Unmap {
    // No default member initializer: with one, GCC rejects unique_ptr's default constructor here.
    size_t size_bytes;
    void operator()(const std::byte* base) const noexcept;
  };
  SafetensorsFile() = default;

  std::string path_;
  std::unique_ptr<const std::byte, Unmap> mapping_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

/// A tensor to write: DATA holds numel(SHAPE) * dtype_size(DTYPE) bytes, C-contiguous.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  ///< May be null when the tensor has no elements.
};

/// Writes TENSORS, packed back to back in the given order, to PATH.tmp.<pid> in the same folder,
/// fsyncs, then renames it over PATH: no partial file is ever visible, and on failure (a missing
/// folder, a repeated name, a failed write) nothing is left behind. The data block starts 8-byte
/// aligned; pass wider dtypes first to keep every tensor aligned (gaps would break other readers).
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace astraea
