#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

namespace astraea {
namespace {

using nlohmann::json;

// The format's own limit (the reference implementation uses 100 MB): a larger header is corrupt.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;
constexpr std::string_view kMetadataKey = "__metadata__";

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size_bytes;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4},   {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  throw std::invalid_argument("astraea: invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw SafetensorsError(path + ": " + what);
}

std::string in_quotes(std::string_view text) { return "'" + std::string(text) + "'"; }

std::string tensor_prefix(std::string_view name) { return "tensor " + in_quotes(name) + ": "; }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// A JSON value as it appears in the header, cut short: a corrupt value may be arbitrarily long.
std::string excerpt(const json& value) {
  std::string text = value.dump();
  return text.size() <= 40 ? text : text.substr(0, 40) + "...";
}

// numel(SHAPE) * dtype_size(DTYPE), or nullopt when a dimension is negative or the product
// overflows.
std::optional<uint64_t> checked_nbytes(const std::vector<int64_t>& shape, DType dtype) {
  uint64_t nbytes = dtype_size(dtype);
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(nbytes, static_cast<uint64_t>(dim), &nbytes)) return std::nullopt;
  }
  if (nbytes / dtype_size(dtype) > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return std::nullopt;
  return nbytes;
}

// Parses the header, failing on a repeated key at any depth: nlohmann::json would silently keep
// the last one, so a file with two tensors of one name would read as one. The parser callback
// sees every key before it is stored, which makes the check cheap.
json parse_header(const std::string& path, const char* begin, const char* end) {
  std::vector<std::set<std::string>> keys_per_open_object;
  std::string top_level_key;
  std::string duplicate;  // the first error found, empty if none
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      keys_per_open_object.emplace_back();
    } else if (event == json::parse_event_t::object_end && !keys_per_open_object.empty()) {
      keys_per_open_object.pop_back();
    } else if (event == json::parse_event_t::key && !keys_per_open_object.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      const bool top_level = keys_per_open_object.size() == 1;
      if (top_level) top_level_key = key;
      if (!keys_per_open_object.back().insert(key).second && duplicate.empty()) {
        const std::string owner =
            top_level_key == kMetadataKey ? "__metadata__: " : tensor_prefix(top_level_key);
        duplicate =
            top_level ? "duplicate tensor " + in_quotes(key) : owner + "duplicate key " + in_quotes(key);
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(begin, end, on_event);
  } catch (const json::exception& error) {  // a syntax error, or a number beyond a double (fuzzing found it)
    std::string text = error.what();
    text.erase(0, text.find("] ") + 2);  // drop nlohmann's "[json.exception.parse_error.101] "
    // The message quotes the bytes last read, which may be binary or broken UTF-8.
    for (char& c : text) c = (c < 0x20 || c > 0x7e) ? '?' : c;
    fail(path, "header is not valid JSON: " + text);
  }
  if (!duplicate.empty()) fail(path, duplicate);
  if (!header.is_object()) fail(path, "header is not a JSON object but " + excerpt(header));
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& entry) {
  if (!entry.is_object()) fail(path, "__metadata__ is not a JSON object but " + excerpt(entry));
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : entry.items()) {
    if (!value.is_string())
      fail(path, "__metadata__: value of " + in_quotes(key) + " is not a string but " + excerpt(value));
    metadata.emplace(key, value.get<std::string>());
  }
  return metadata;
}

// Checks one header entry against the data block of DATA_BYTES bytes starting at DATA_BLOCK.
TensorView parse_tensor(const std::string& path, const std::string& name, const json& entry,
                        const std::byte* data_block, uint64_t data_bytes) {
  const std::string where = tensor_prefix(name);
  if (!entry.is_object()) fail(path, where + "entry is not a JSON object but " + excerpt(entry));

  const auto dtype_field = entry.find("dtype");
  if (dtype_field == entry.end()) fail(path, where + "missing dtype");
  if (!dtype_field->is_string()) fail(path, where + "dtype is not a string but " + excerpt(*dtype_field));
  const std::optional<DType> dtype = dtype_from_name(dtype_field->get_ref<const std::string&>());
  if (!dtype) fail(path, where + "unknown dtype " + excerpt(*dtype_field));

  const auto shape_field = entry.find("shape");
  if (shape_field == entry.end()) fail(path, where + "missing shape");
  if (!shape_field->is_array()) fail(path, where + "shape is not an array but " + excerpt(*shape_field));
  std::vector<int64_t> shape;
  for (const json& dim : *shape_field) {
    // Non-negative JSON integers parse as number_unsigned; negatives and fractions do not.
    if (!dim.is_number_unsigned() || dim.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
      fail(path, where + "shape " + excerpt(*shape_field) + " holds " + excerpt(dim) +
                     ", not a non-negative integer");
    }
    shape.push_back(dim.get<int64_t>());
  }
  const std::optional<uint64_t> nbytes = checked_nbytes(shape, *dtype);
  if (!nbytes) fail(path, where + "shape " + shape_text(shape) + " has too many elements (overflow)");

  const auto offsets_field = entry.find("data_offsets");
  if (offsets_field == entry.end()) fail(path, where + "missing data_offsets");
  const json& offsets = *offsets_field;
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail(path, where + "data_offsets " + excerpt(offsets) + " is not [begin, end] of non-negative integers");
  }
  const uint64_t begin = offsets[0].get<uint64_t>();
  const uint64_t end = offsets[1].get<uint64_t>();
  const std::string range = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
  if (begin > end) fail(path, where + range + " has begin after end");
  if (end > data_bytes) {
    fail(path, where + range + " ends past the " + std::to_string(data_bytes) +
                   "-byte data block (file truncated?)");
  }
  if (end - begin != *nbytes) {
    fail(path, where + range + " holds " + std::to_string(end - begin) + " bytes but " +
                   std::string(dtype_name(*dtype)) + " " + shape_text(shape) + " needs " +
                   std::to_string(*nbytes));
  }
  return TensorView{name, *dtype, std::move(shape), data_block + begin, static_cast<size_t>(*nbytes)};
}

void write_all(const std::string& path, const std::string& tmp, int fd, const void* data, size_t nbytes) {
  const char* next = static_cast<const char*>(data);
  while (nbytes > 0) {
    const ssize_t written = ::write(fd, next, nbytes);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0)
      fail(path, "writing " + in_quotes(tmp) + " failed: " + std::strerror(written < 0 ? errno : EIO));
    next += written;
    nbytes -= static_cast<size_t>(written);
  }
}

// Closes FD on scope exit; the mapping made from it stays valid after the close.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

// Owns the temporary file of write_safetensors: closes and removes it unless committed.
struct TempFile {
  std::string path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!committed) ::unlink(path.c_str());
  }
};

}  // namespace

size_t dtype_size(DType dtype) { return info(dtype).size_bytes; }

std::string_view dtype_name(DType dtype) { return info(dtype).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

int64_t TensorView::numel() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

void SafetensorsFile::Unmap::operator()(const std::byte* base) const noexcept {
  ::munmap(const_cast<std::byte*>(base), size_bytes);
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  const FileDescriptor file_fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  const int fd = file_fd.fd;
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat status {};
  if (::fstat(fd, &status) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(status.st_mode)) fail(path, "not a regular file");
  const uint64_t file_bytes = static_cast<uint64_t>(status.st_size);
  if (file_bytes < 8) {
    fail(path, "file is " + std::to_string(file_bytes) +
                   " bytes, shorter than the 8-byte header length (truncated?)");
  }
  void* base = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  if (base == MAP_FAILED) fail(path, std::string("cannot mmap: ") + std::strerror(errno));

  SafetensorsFile file;
  file.path_ = path;
  file.mapping_ = {static_cast<const std::byte*>(base), Unmap{file_bytes}};
  const std::byte* bytes = file.mapping_.get();

  uint64_t header_bytes = 0;  // little-endian, whatever the host's byte order
  for (int i = 7; i >= 0; --i) header_bytes = header_bytes << 8 | std::to_integer<uint64_t>(bytes[i]);
  if (header_bytes == 0) fail(path, "header length is 0");
  if (header_bytes > kMaxHeaderBytes) {
    fail(path,
         "header length " + std::to_string(header_bytes) + " exceeds the 100 MiB limit (corrupt file?)");
  }
  if (header_bytes > file_bytes - 8) {
    fail(path, "header length " + std::to_string(header_bytes) + " runs past the end of the " +
                   std::to_string(file_bytes) + "-byte file (truncated?)");
  }
  const char* header_text = reinterpret_cast<const char*>(bytes + 8);
  const json header = parse_header(path, header_text, header_text + header_bytes);

  const std::byte* data_block = bytes + 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - 8 - header_bytes;
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      file.metadata_ = parse_metadata(path, entry);
    } else {
      file.tensors_.push_back(parse_tensor(path, name, entry, data_block, data_bytes));
    }
  }

  std::sort(file.tensors_.begin(), file.tensors_.end(), [](const TensorView& a, const TensorView& b) {
    return a.data != b.data ? a.data < b.data : a.nbytes < b.nbytes;
  });
  // In offset order, a tensor overlaps an earlier one exactly when it starts before the furthest
  // end seen so far. Empty tensors hold no bytes, so they overlap nothing.
  const TensorView* furthest = nullptr;
  for (const TensorView& tensor : file.tensors_) {
    if (tensor.nbytes == 0) continue;
    if (furthest && tensor.data < furthest->data + furthest->nbytes) {
      fail(path, "tensors " + in_quotes(furthest->name) + " and " + in_quotes(tensor.name) +
                     " overlap in the data block");
    }
    if (!furthest || tensor.data + tensor.nbytes > furthest->data + furthest->nbytes) furthest = &tensor;
  }
  for (size_t i = 0; i < file.tensors_.size(); ++i) file.index_.emplace(file.tensors_[i].name, i);
  return file;
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  const auto found = index_.find(name);
  return found == index_.end() ? nullptr : &tensors_[found->second];
}

const TensorView& SafetensorsFile::at(std::string_view name) const {
  const TensorView* tensor = find(name);
  if (!tensor) fail(path_, "no tensor " + in_quotes(name));
  return *tensor;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // The header is assembled entry by entry, in the caller's order, which is also the data order.
  std::string header_text = "{";
  auto add_entry = [&](const std::string& key, const json& value) {
    if (header_text.size() > 1) header_text += ',';
    try {
      header_text += json(key).dump() + ':' + value.dump();
    } catch (const json::exception& error) {  // a string that is not valid UTF-8
      fail(path, "cannot put " + in_quotes(key) + " in the header: " + error.what());
    }
  };
  if (!metadata.empty()) add_entry(std::string(kMetadataKey), metadata);
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    const std::string where = tensor_prefix(tensor.name);
    if (tensor.name == kMetadataKey) fail(path, where + "the name is reserved for metadata");
    if (!names.insert(tensor.name).second) fail(path, where + "the name appears twice");
    const std::optional<uint64_t> nbytes = checked_nbytes(tensor.shape, tensor.dtype);
    if (!nbytes)
      fail(path, where + "shape " + shape_text(tensor.shape) + " has a negative dimension or overflows");
    if (*nbytes > 0 && tensor.data == nullptr) fail(path, where + "data is null");
    add_entry(tensor.name, {{"dtype", dtype_name(tensor.dtype)},
                            {"shape", tensor.shape},
                            {"data_offsets", {offset, offset + *nbytes}}});
    offset += *nbytes;
  }
  header_text += '}';
  // Padding the header with spaces puts the data block at an 8-byte boundary of the file.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i)
    length_bytes[i] = static_cast<unsigned char>(uint64_t{header_text.size()} >> (8 * i));

  TempFile tmp{path + ".tmp." + std::to_string(::getpid())};
  tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (tmp.fd < 0) {
    tmp.committed = true;  // nothing was created, and an unlink could hit another writer's file
    fail(path, "cannot create " + in_quotes(tmp.path) + ": " + std::strerror(errno));
  }
  write_all(path, tmp.path, tmp.fd, length_bytes, sizeof length_bytes);
  write_all(path, tmp.path, tmp.fd, header_text.data(), header_text.size());
  for (const TensorToWrite& tensor : tensors) {
    write_all(path, tmp.path, tmp.fd, tensor.data, *checked_nbytes(tensor.shape, tensor.dtype));
  }
  if (::fsync(tmp.fd) != 0)
    fail(path, "fsync of " + in_quotes(tmp.path) + " failed: " + std::strerror(errno));
  const int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) fail(path, "closing " + in_quotes(tmp.path) + " failed: " + std::strerror(errno));
  if (std::rename(tmp.path.c_str(), path.c_str()) != 0) {
    fail(path, "cannot rename " + in_quotes(tmp.path) + " over it: " + std::strerror(errno));
  }
  tmp.committed = true;
  // Best effort: make the rename itself durable.
  std::string folder = std::filesystem::path(path).parent_path().string();
  const int folder_fd = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (folder_fd >= 0) {
    ::fsync(folder_fd);
    ::close(folder_fd);
  }
}

}  // namespace astraea
