#include "model/text/umt5_tokenizer.h"

#include <dlfcn.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "astraea/config.h"

namespace astraea {
namespace {

// UTF-8 of code point CP.
std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xc0 | cp >> 6), s += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xe0 | cp >> 12), s += static_cast<char>(0x80 | (cp >> 6 & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    s += static_cast<char>(0xf0 | cp >> 18), s += static_cast<char>(0x80 | (cp >> 12 & 0x3f));
    s += static_cast<char>(0x80 | (cp >> 6 & 0x3f)), s += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return s;
}

// One pass of HTML unescaping: &amp; &lt; &gt; &quot; &apos; &#39; &nbsp; and &#N; / &#xN;.
std::string unescape(const std::string& s) {
  static const std::pair<const char*, const char*> kNamed[] = {
      {"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"}, {"nbsp", "\xc2\xa0"}};
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t semi = s[i] == '&' ? s.find(';', i) : std::string::npos;
    if (semi != std::string::npos && semi - i <= 10) {
      const auto name = s.substr(i + 1, semi - i - 1);
      bool done = false;
      for (const auto& [n, v] : kNamed) {
        if (name == n) out += v, done = true;
      }
      if (!done && name.size() > 1 && name[0] == '#') {
        const bool hex = name[1] == 'x' || name[1] == 'X';
        const auto digits = name.substr(hex ? 2 : 1);
        if (!digits.empty() &&
            digits.find_first_not_of(hex ? "0123456789abcdefABCDEF" : "0123456789") == std::string::npos) {
          const auto cp = std::stoul(digits, nullptr, hex ? 16 : 10);
          if (cp > 0 && cp < 0x110000) out += utf8(static_cast<uint32_t>(cp)), done = true;
        }
      }
      if (done) {
        i = semi + 1;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

// The next code point of S at I, advancing I; -1 for a byte that starts no valid UTF-8 sequence
// (the caller keeps that byte as it is).
int64_t next_code_point(const std::string& s, size_t& i) {
  const auto b = static_cast<unsigned char>(s[i++]);
  if (b < 0x80) return b;
  const int n = (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : (b >> 3) == 30 ? 3 : 0;
  if (n == 0 || i + n > s.size()) return -1;
  uint32_t cp = b & (0x3f >> n);
  for (int k = 0; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c >> 6) != 2) return -1;
    cp = cp << 6 | (c & 0x3f);
  }
  i += n;
  return cp;
}

// What Python's regex `\s` matches (Wan's whitespace_clean), beyond ASCII.
bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
         cp == 0x205f || cp == 0x3000;
}

// What ftfy's defaults do to ordinary text: curly quotes made straight (uncurl_quotes) and the
// fullwidth ASCII forms made ASCII (fix_character_width).
uint32_t ftfy_width_and_quotes(uint32_t cp) {
  if (cp == 0x02bc || (cp >= 0x2018 && cp <= 0x201b)) return '\'';
  if (cp >= 0x201c && cp <= 0x201f) return '"';
  if (cp >= 0xff01 && cp <= 0xff5e) return cp - 0xff01 + 0x21;
  return cp;
}

}  // namespace

std::string clean_prompt(const std::string& text) {
  const auto s = unescape(unescape(text));
  std::string out;
  bool space = false;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    const int64_t decoded = next_code_point(s, i);
    if (decoded < 0) {  // not UTF-8: the byte as it is
      if (space && !out.empty()) out += ' ';
      space = false;
      out += s[at];
      continue;
    }
    const uint32_t cp = ftfy_width_and_quotes(static_cast<uint32_t>(decoded));
    if (is_space(cp)) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += utf8(cp);
  }
  return out;
}

// SentencePiece, opened from the shim library (spm_shim.cpp says why it is not linked).
struct Umt5Tokenizer::Impl {
  void* library = nullptr;
  void* sp = nullptr;
  void (*free_sp)(void*) = nullptr;
  int (*eos_id)(void*) = nullptr;
  long (*encode)(void*, const char*, int*, long, char*, size_t) = nullptr;
  ~Impl() {
    if (sp) free_sp(sp);
    if (library) dlclose(library);
  }
};

Umt5Tokenizer::Umt5Tokenizer(const std::string& path) : impl_(std::make_unique<Impl>()) {
#if ASTRAEA_HAS_SENTENCEPIECE
  if (!std::filesystem::is_regular_file(path))
    throw std::runtime_error(path + ": no such file (umT5's spiece.model)");
  const char* env = std::getenv("ASTRAEA_SPM_SHIM");
  const std::string shim = env && *env ? env : ASTRAEA_SPM_SHIM_PATH;
  impl_->library = dlopen(shim.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (!impl_->library)
    throw std::runtime_error(path + ": cannot open the SentencePiece shim " + shim + " (" + dlerror() + ")");
  auto symbol = [&](const char* name) {
    void* f = dlsym(impl_->library, name);
    if (!f) throw std::runtime_error(shim + ": no symbol " + name);
    return f;
  };
  auto load = reinterpret_cast<void* (*)(const char*, char*, size_t)>(symbol("astraea_spm_load"));
  impl_->free_sp = reinterpret_cast<void (*)(void*)>(symbol("astraea_spm_free"));
  impl_->eos_id = reinterpret_cast<int (*)(void*)>(symbol("astraea_spm_eos_id"));
  impl_->encode =
      reinterpret_cast<long (*)(void*, const char*, int*, long, char*, size_t)>(symbol("astraea_spm_encode"));
  char error[512] = "";
  impl_->sp = load(path.c_str(), error, sizeof error);
  if (!impl_->sp) throw std::runtime_error(path + ": not a SentencePiece model (" + error + ")");
  if (impl_->eos_id(impl_->sp) < 0)
    throw std::runtime_error(path + ": the model has no end-of-sequence piece");
#else
  throw std::runtime_error(path +
                           ": this build has no SentencePiece to read umT5's tokenizer (install "
                           "libsentencepiece-dev and rebuild, or pass --context)");
#endif
}

std::vector<int64_t> Umt5Tokenizer::encode(const std::string& text, int64_t max_tokens) const {
  if (max_tokens < 1) throw std::invalid_argument("max_tokens must be at least 1");
  const auto clean = clean_prompt(text);
  std::vector<int> pieces(clean.size() + 1);
  char error[512] = "";
  long n = impl_->encode(impl_->sp, clean.c_str(), pieces.data(), static_cast<long>(pieces.size()), error,
                         sizeof error);
  if (n > static_cast<long>(pieces.size())) {
    pieces.resize(static_cast<size_t>(n));
    n = impl_->encode(impl_->sp, clean.c_str(), pieces.data(), n, error, sizeof error);
  }
  if (n < 0) throw std::runtime_error(std::string("cannot tokenize the prompt: ") + error);
  std::vector<int64_t> ids(pieces.begin(), pieces.begin() + n);
  if (static_cast<int64_t>(ids.size()) > max_tokens - 1) ids.resize(static_cast<size_t>(max_tokens - 1));
  ids.push_back(impl_->eos_id(impl_->sp));
  return ids;
}

Umt5Tokenizer::~Umt5Tokenizer() = default;
Umt5Tokenizer::Umt5Tokenizer(Umt5Tokenizer&&) noexcept = default;

}  // namespace astraea
