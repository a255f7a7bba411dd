#include "model/word_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace astraea {

std::vector<std::string> split_words(const std::string& text) {
  std::string lower = text;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::istringstream in(lower);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

std::vector<int64_t> word_ids(const std::vector<std::string>& vocabulary, const std::string& text) {
  std::vector<int64_t> ids;
  for (const std::string& w : split_words(text)) {
    auto it = std::lower_bound(vocabulary.begin(), vocabulary.end(), w);
    if (it == vocabulary.end() || *it != w) {
      std::string known;
      for (const std::string& v : vocabulary) known += (known.empty() ? "" : ", ") + v;
      throw std::invalid_argument("unknown word '" + w + "' in prompt '" + text + "'; known words: " + known);
    }
    ids.push_back(it - vocabulary.begin() + 1);
  }
  return ids;
}

}  // namespace astraea
