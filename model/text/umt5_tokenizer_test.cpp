#include "model/text/umt5_tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "astraea/config.h"

namespace astraea {
namespace {

const std::string kFixtures = ASTRAEA_WAN_FIXTURES;

TEST(Umt5Tokenizer, CleansAsWanDoes) {
  EXPECT_EQ(clean_prompt("  Two   dogs\tplay &amp;amp; run\n on  "), "Two dogs play & run on");
  EXPECT_EQ(clean_prompt("&lt;b&gt; &#x41;&#66; &quot;q&quot; &unknown; & x;"),
            "<b> AB \"q\" &unknown; & x;");
  EXPECT_EQ(clean_prompt(""), "");
  // ftfy's defaults: curly quotes straight, fullwidth ASCII made ASCII; Python's \s covers NBSP
  // and the ideographic space; bytes that are not UTF-8 stay as they are.
  EXPECT_EQ(clean_prompt("\xe2\x80\x9c"
                         "it"
                         "\xe2\x80\x99"
                         "s"
                         "\xe2\x80\x9d"
                         "\xc2\xa0"
                         "a"
                         "\xe3\x80\x80"
                         "cat"
                         "\xef\xbc\x8c"
                         "\xef\xbc\xa1"),
            "\"it's\" a cat,A");
  EXPECT_EQ(clean_prompt("a\xff"
                         "b &nbsp; c"),
            "a\xff"
            "b c");
}

// Wan's own cleaning and SentencePiece's own encoder (scripts/wan_fixtures.py) on prompts with
// entities, runs of whitespace, Chinese, curly quotes, fullwidth forms, Unicode spaces and words
// the model never saw.
TEST(Umt5Tokenizer, MatchesWansCleaningAndSentencePiece) {
  if (!ASTRAEA_HAS_SENTENCEPIECE) GTEST_SKIP() << "this build has no SentencePiece";
  const Umt5Tokenizer tokenizer(kFixtures + "/spiece.model");
  std::ifstream in(kFixtures + "/tokenizer.json");
  const auto cases = nlohmann::json::parse(in);
  ASSERT_EQ(cases.size(), 6u);
  for (const auto& c : cases) {
    const auto prompt = c.at("prompt").get<std::string>();
    EXPECT_EQ(clean_prompt(prompt), c.at("clean").get<std::string>()) << prompt;
    EXPECT_EQ(tokenizer.encode(prompt, 512), c.at("ids").get<std::vector<int64_t>>()) << prompt;
  }
  // Truncation keeps </s> last, as Hugging Face's does.
  const auto all = tokenizer.encode(cases[0].at("prompt").get<std::string>(), 512);
  const auto cut = tokenizer.encode(cases[0].at("prompt").get<std::string>(), 5);
  ASSERT_EQ(cut.size(), 5u);
  EXPECT_EQ(std::vector<int64_t>(cut.begin(), cut.end() - 1),
            std::vector<int64_t>(all.begin(), all.begin() + 4));
  EXPECT_EQ(cut.back(), 1);
}

TEST(Umt5Tokenizer, NamesAMissingOrBadModelFile) {
  EXPECT_THROW(Umt5Tokenizer(kFixtures + "/none.model"), std::runtime_error);
  try {
    Umt5Tokenizer t(kFixtures + "/tokenizer.json");
    ADD_FAILURE() << "a JSON file loaded as a SentencePiece model";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(kFixtures + "/tokenizer.json: ", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace astraea
