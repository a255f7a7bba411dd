// Word-level tokenisation for presets with a text encoder of their own (tiny): a prompt's words,
// lower-cased, as 1-based ids into the preset's sorted vocabulary (0 is padding).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace astraea {

/// TEXT's words (split on white space, lower-cased).
std::vector<std::string> split_words(const std::string& text);

/// The ids of TEXT's words in VOCABULARY (sorted, unique): index + 1. An unknown word throws
/// std::invalid_argument naming it and listing the vocabulary.
std::vector<int64_t> word_ids(const std::vector<std::string>& vocabulary, const std::string& text);

}  // namespace astraea
