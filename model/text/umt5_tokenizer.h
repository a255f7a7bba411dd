// umT5's tokenizer: the SentencePiece model of the release's google/umt5-xxl folder (spiece.model)
// through Debian's libsentencepiece, with the cleaning and end-of-sequence token of Wan 2.1's
// HuggingfaceTokenizer(clean='whitespace'). The official pipeline goes through Hugging Face's
// tokenizer, which wraps the same model; docs/wan.md says where the two could differ.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace astraea {

/// Wan's whitespace cleaning: what ftfy's defaults do to ordinary text (curly quotes made
/// straight, fullwidth ASCII forms made ASCII; its mojibake repair is not done), HTML entities
/// unescaped twice (the common named ones and numeric ones), runs of whitespace (Python's `\s`,
/// Unicode spaces included) made one space, the ends stripped.
std::string clean_prompt(const std::string& text);

class Umt5Tokenizer {
 public:
  /// Loads the SentencePiece model at PATH; throws std::runtime_error naming the file when it is
  /// missing or not a model, or saying that this build has no SentencePiece.
  explicit Umt5Tokenizer(const std::string& path);
  ~Umt5Tokenizer();
  Umt5Tokenizer(Umt5Tokenizer&&) noexcept;

  /// The ids of the cleaned TEXT and the end-of-sequence id, truncated to MAX_TOKENS with the
  /// end-of-sequence id kept last (as Hugging Face truncates), never padded.
  std::vector<int64_t> encode(const std::string& text, int64_t max_tokens) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace astraea
