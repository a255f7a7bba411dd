// torch.save's format: a zip archive (read by LibTorch's PyTorchStreamReader) holding data.pkl, a
// protocol-2 pickle whose tensors are calls of torch._utils._rebuild_tensor_v2 on storages that it
// names by persistent id, each storage the record data/KEY. LibTorch's own unpickler turns a
// collections.OrderedDict (what state_dict() returns) into None, so the pickle is read here: the
// opcodes torch.save emits, and only the classes a state dict holds.
#include "model/pth.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <variant>
#include <vector>

namespace astraea {
namespace {

struct Value;
using Ptr = std::shared_ptr<Value>;
struct Global {
  std::string name;  // "module.Class"
};
struct Tuple {
  std::vector<Ptr> items;
};
struct Dict {
  std::vector<std::pair<Ptr, Ptr>> items;
};
struct Storage {  // a storage record, flat; only _rebuild_tensor_v2 takes one
  at::Tensor flat;
};
// DEPTH: how deep the containers inside it nest; STORED: it is inside a container. A pickle can
// nest without end, or through its memo make a container hold itself. Here a stored container
// never changes again (torch.save fills every container before storing it), so depths are final,
// no cycle can form, and past kMaxDepth a pickle is refused: walking and freeing values never
// recurse further.
struct Value {
  std::variant<std::monostate, bool, int64_t, double, std::string, Tuple, Dict, Global, at::Tensor, Storage>
      v;
  int depth = 0;
  bool stored = false;
};
constexpr int kMaxDepth = 64;

Ptr make(decltype(Value::v) v, int depth = 0) { return std::make_shared<Value>(Value{std::move(v), depth}); }

// The storage classes torch.save names, and their element types.
at::ScalarType storage_dtype(const std::string& name) {
  static const std::pair<const char*, at::ScalarType> kTypes[] = {
      {"torch.FloatStorage", at::kFloat}, {"torch.DoubleStorage", at::kDouble},
      {"torch.HalfStorage", at::kHalf},   {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.LongStorage", at::kLong},   {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort}, {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},   {"torch.BoolStorage", at::kBool}};
  for (const auto& [n, t] : kTypes)
    if (name == n) return t;
  throw std::runtime_error("storage class '" + name + "' is not one a state dict holds");
}

class Unpickler {
 public:
  Unpickler(caffe2::serialize::PyTorchStreamReader& zip, const std::string& path) : zip_(zip), path_(path) {
    auto [data, size] = zip_.getRecord("data.pkl");
    bytes_.assign(static_cast<const char*>(data.get()), static_cast<const char*>(data.get()) + size);
  }

  Ptr run() {
    for (;;) {
      const auto at = pos_;
      const auto op = static_cast<unsigned char>(byte());
      switch (op) {
        case 0x80:
          byte();
          break;  // PROTO
        case 0x95:
          take(8);
          break;  // FRAME
        case '.':
          return pop();  // STOP
        case '(':
          marks_.push_back(stack_.size());
          break;  // MARK
        case 'N':
          push(make(std::monostate{}));
          break;  // NONE
        case 0x88:
          push(make(true));
          break;  // NEWTRUE
        case 0x89:
          push(make(false));
          break;  // NEWFALSE
        case 'K':
          push(make(int64_t(static_cast<unsigned char>(byte()))));
          break;  // BININT1
        case 'M':
          push(make(int64_t(unsigned_le(2))));
          break;  // BININT2
        case 'J':
          push(make(int64_t(static_cast<int32_t>(unsigned_le(4)))));
          break;  // BININT
        case 0x8a:
          push(make(long1()));
          break;  // LONG1
        case 'G':
          push(make(binfloat()));
          break;  // BINFLOAT
        case 'X':
          push(make(text(unsigned_le(4))));
          break;  // BINUNICODE
        case 0x8c:
          push(make(text(static_cast<unsigned char>(byte()))));
          break;     // SHORT_BINUNICODE
        case 'c': {  // GLOBAL
          const auto module = line(), name = line();
          push(make(Global{module + "." + name}));
          break;
        }
        case ')':
          push(make(Tuple{}));
          break;  // EMPTY_TUPLE
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          Tuple t;
          t.items.resize(op - 0x84);
          for (auto i = t.items.size(); i-- > 0;) t.items[i] = pop();
          push(container(std::move(t), at));
          break;
        }
        case 't':  // TUPLE
          push(container(Tuple{pop_mark()}, at));
          break;
        case ']':  // EMPTY_LIST
          push(make(Tuple{}));
          break;
        case 'e': {  // APPENDS
          auto items = pop_mark();
          for (const auto& item : items) nest(top(), item, at);
          auto& list = as<Tuple>(top(), "APPENDS");
          list.items.insert(list.items.end(), items.begin(), items.end());
          break;
        }
        case 'a': {  // APPEND
          auto item = pop();
          nest(top(), item, at);
          as<Tuple>(top(), "APPEND").items.push_back(item);
          break;
        }
        case '}':
          push(make(Dict{}));
          break;     // EMPTY_DICT
        case 'u': {  // SETITEMS
          auto items = pop_mark();
          if (items.size() % 2) fail(at, "SETITEMS with an odd number of items");
          for (const auto& item : items) nest(top(), item, at);
          auto& dict = as<Dict>(top(), "SETITEMS");
          for (size_t i = 0; i < items.size(); i += 2) dict.items.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 's': {  // SETITEM
          auto value = pop(), key = pop();
          nest(top(), key, at), nest(top(), value, at);
          as<Dict>(top(), "SETITEM").items.emplace_back(key, value);
          break;
        }
        case 'q':
          memo(static_cast<unsigned char>(byte()));
          break;  // BINPUT
        case 'r':
          memo(unsigned_le(4));
          break;  // LONG_BINPUT
        case 'h':
          push(recall(static_cast<unsigned char>(byte()), at));
          break;  // BINGET
        case 'j':
          push(recall(unsigned_le(4), at));
          break;  // LONG_BINGET
        case 'Q':
          push(storage(pop(), at));
          break;     // BINPERSID
        case 'R': {  // REDUCE
          auto args = pop();
          auto callable = pop();
          push(reduce(as<Global>(callable, "REDUCE").name, as<Tuple>(args, "REDUCE").items, at));
          break;
        }
        case 'b': {  // BUILD: an OrderedDict's state (its _metadata), which loading needs not
          pop();
          if (!std::holds_alternative<Dict>(top()->v) || top()->stored)
            fail(at, "BUILD on something other than a dict being built");
          break;
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(at, std::string("pickle opcode ") + hex + " is not one torch.save writes");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(size_t at, const std::string& what) const {
    throw std::runtime_error(path_ + ": data.pkl byte " + std::to_string(at) + ": " + what);
  }
  char byte() {
    if (pos_ >= bytes_.size()) fail(pos_, "the pickle ends early");
    return bytes_[pos_++];
  }
  const char* take(size_t n) {
    if (n > bytes_.size() - pos_) fail(pos_, "the pickle ends early");
    pos_ += n;
    return bytes_.data() + pos_ - n;
  }
  uint64_t unsigned_le(size_t n) {
    const auto* p = reinterpret_cast<const unsigned char*>(take(n));
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
  }
  int64_t long1() {
    const size_t n = static_cast<unsigned char>(byte());
    if (n > 8) fail(pos_, "an integer wider than 64 bits");
    if (n == 0) return 0;
    uint64_t v = unsigned_le(n);
    if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  double binfloat() {
    const auto* p = reinterpret_cast<const unsigned char*>(take(8));
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = bits << 8 | p[i];  // big-endian
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  std::string text(uint64_t n) { return {take(n), n}; }
  std::string line() {
    const auto end = std::find(bytes_.begin() + static_cast<std::ptrdiff_t>(pos_), bytes_.end(), '\n');
    if (end == bytes_.end()) fail(pos_, "the pickle ends early");
    std::string s(bytes_.begin() + static_cast<std::ptrdiff_t>(pos_), end);
    pos_ = static_cast<size_t>(end - bytes_.begin()) + 1;
    return s;
  }
  void push(Ptr v) { stack_.push_back(std::move(v)); }
  Ptr pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail(pos_, "the stack is empty");
    auto v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const Ptr& top() {
    if (stack_.empty()) fail(pos_, "the stack is empty");
    return stack_.back();
  }
  std::vector<Ptr> pop_mark() {
    if (marks_.empty()) fail(pos_, "no MARK to pop to");
    std::vector<Ptr> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  template <typename T>
  T& as(const Ptr& v, const char* op) {
    if (!std::holds_alternative<T>(v->v)) fail(pos_, std::string(op) + " on the wrong kind of value");
    return std::get<T>(v->v);
  }
  void memo(uint64_t key) { memo_[key] = top(); }
  // A new tuple of ITEMS (Value's comment says why items are stored once and depths bounded).
  Ptr container(Tuple t, size_t at) {
    auto parent = make(Tuple{});
    for (const auto& item : t.items) nest(parent, item, at);
    std::get<Tuple>(parent->v) = std::move(t);
    return parent;
  }
  // ITEM goes into the container PARENT, which must not be stored itself yet.
  void nest(const Ptr& parent, const Ptr& item, size_t at) {
    if (parent->stored) fail(at, "a container that changes after being stored in another");
    if (item.get() == parent.get()) fail(at, "a container that holds itself");
    if (item->depth + 1 > kMaxDepth) fail(at, "containers nest deeper than " + std::to_string(kMaxDepth));
    item->stored = true;
    parent->depth = std::max(parent->depth, item->depth + 1);
  }
  Ptr recall(uint64_t key, size_t at) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) fail(at, "a memo key that was never stored");
    return it->second;
  }
  int64_t int_of(const Ptr& v, size_t at) {
    if (!std::holds_alternative<int64_t>(v->v)) fail(at, "an integer was expected");
    return std::get<int64_t>(v->v);
  }
  std::vector<int64_t> ints(const Ptr& v, size_t at) {
    std::vector<int64_t> out;
    for (const auto& i : as<Tuple>(v, "a size or stride").items) out.push_back(int_of(i, at));
    return out;
  }

  // ('storage', torch.XStorage, key, location, numel): the record data/KEY as a flat tensor,
  // shared by every tensor that views it.
  Ptr storage(const Ptr& pid, size_t at) {
    const auto& t = as<Tuple>(pid, "BINPERSID").items;
    if (t.size() != 5 || !std::holds_alternative<std::string>(t[0]->v) ||
        std::get<std::string>(t[0]->v) != "storage" || !std::holds_alternative<std::string>(t[2]->v))
      fail(at, "a persistent id that is not a storage");
    const auto& key = std::get<std::string>(t[2]->v);
    if (auto it = storages_.find(key); it != storages_.end()) return make(Storage{it->second});
    at::ScalarType dtype;
    try {
      dtype = storage_dtype(as<Global>(t[1], "BINPERSID").name);
    } catch (const std::runtime_error& e) {
      fail(at, e.what());
    }
    const int64_t numel = int_of(t[4], at);
    const std::string record = "data/" + key;
    if (!zip_.hasRecord(record)) fail(at, "the archive has no record " + record);
    auto [data, size] = zip_.getRecord(record);
    uint64_t bytes = 0;
    if (numel < 0 || __builtin_mul_overflow(static_cast<uint64_t>(numel), at::elementSize(dtype), &bytes) ||
        size != bytes)
      fail(at, "storage " + record + " holds " + std::to_string(size) + " bytes, not " +
                   std::to_string(numel) + " elements");
    auto flat = at::empty({numel}, at::TensorOptions().dtype(dtype));
    if (size) std::memcpy(flat.data_ptr(), data.get(), size);
    storages_[key] = flat;
    return make(Storage{flat});
  }

  Ptr reduce(const std::string& callable, const std::vector<Ptr>& args, size_t at) {
    if (callable == "collections.OrderedDict") return make(Dict{});
    if (callable == "torch._utils._rebuild_tensor_v2" && args.size() >= 4) {
      const auto& storage = as<Storage>(args[0], "_rebuild_tensor_v2").flat;
      const auto size = ints(args[2], at), stride = ints(args[3], at);
      const int64_t offset = int_of(args[1], at);
      if (size.size() != stride.size()) fail(at, "a tensor whose size and stride differ in length");
      if (offset < 0) fail(at, "a tensor at a negative offset");
      int64_t last = offset;  // the furthest element the view reaches, checked for overflow
      bool empty = false, overflow = false;
      for (size_t i = 0; i < size.size(); ++i) {
        if (size[i] < 0 || stride[i] < 0) fail(at, "a tensor with a negative size or stride");
        empty |= size[i] == 0;
        int64_t reach = 0;
        overflow |= __builtin_mul_overflow(size[i] == 0 ? 0 : size[i] - 1, stride[i], &reach) ||
                    __builtin_add_overflow(last, reach, &last);
      }
      if (!empty && (overflow || last >= storage.numel())) fail(at, "a tensor that reaches past its storage");
      return make(storage.as_strided(size, stride, offset));
    }
    if (callable == "torch._utils._rebuild_parameter" && !args.empty()) return args[0];
    fail(at, "class '" + callable + "' is not one a state dict holds");
  }

  caffe2::serialize::PyTorchStreamReader& zip_;
  std::string path_;
  std::vector<char> bytes_;
  size_t pos_ = 0;
  std::vector<Ptr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Ptr> memo_;
  std::map<std::string, at::Tensor> storages_;
};

// A dict shared through the memo is walked once per place it appears: VISITS bounds the walk, so
// dicts that each hold the one below twice cannot make it exponential.
void flatten(const Ptr& v, const std::string& prefix, const std::string& path,
             std::map<std::string, at::Tensor>& out, int64_t& visits) {
  if (++visits > (int64_t{1} << 22))
    throw std::runtime_error(path + ": more than 4194304 entries in its dicts (is this a state dict?)");
  if (std::holds_alternative<at::Tensor>(v->v)) {
    out[prefix] = std::get<at::Tensor>(v->v);
    return;
  }
  if (!std::holds_alternative<Dict>(v->v)) {
    throw std::runtime_error(path + ": " +
                             (prefix.empty() ? std::string("the top level") : "'" + prefix + "'") +
                             " is not a tensor or a dict of them (is this a state dict?)");
  }
  for (const auto& [key, value] : std::get<Dict>(v->v).items) {
    if (!std::holds_alternative<std::string>(key->v))
      throw std::runtime_error(path + ": a dict key is not a string");
    const auto& name = std::get<std::string>(key->v);
    flatten(value, prefix.empty() ? name : prefix + "." + name, path, out, visits);
  }
}

}  // namespace

std::map<std::string, at::Tensor> read_pth(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw std::runtime_error(path + ": no such file");
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    const std::string m = e.what_without_backtrace();
    throw std::runtime_error(path + ": not a torch.save zip archive LibTorch can read (" +
                             m.substr(0, m.find('\n')) + ")");
  }
  if (!zip->hasRecord("data.pkl"))
    throw std::runtime_error(path + ": no data.pkl: not a torch.save zip archive");
  Ptr value;
  try {
    value = Unpickler(*zip, path).run();
  } catch (const c10::Error& e) {  // a record that cannot be read, a view LibTorch refuses
    const std::string m = e.what_without_backtrace();
    throw std::runtime_error(path + ": " + m.substr(0, m.find('\n')));
  } catch (const std::bad_alloc&) {
    throw std::runtime_error(path + ": out of memory reading its tensors");
  }
  std::map<std::string, at::Tensor> out;
  int64_t visits = 0;
  flatten(value, "", path, out, visits);
  return out;
}

}  // namespace astraea
