// The shapes world's prompt grammar on arbitrary text: a parsed prompt or PromptError, and a
// parsed prompt's canonical text parses back to the same prompt.
#include <cstdlib>
#include <string>

#include "shapes/shapes_world.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string canonical;
  try {
    canonical = astraea::shapes::to_text(astraea::shapes::parse_prompt(text));
  } catch (const astraea::shapes::PromptError&) {
    return 0;
  }
  try {  // the canonical text parses back to itself
    if (astraea::shapes::to_text(astraea::shapes::parse_prompt(canonical)) != canonical) std::abort();
  } catch (const astraea::shapes::PromptError&) {
    std::abort();
  }
  return 0;
}
