// Schedule files on arbitrary bytes: read_schedule returns a schedule that passes its own
// validation, or throws std::invalid_argument / std::runtime_error naming the file.
#include <cstdlib>
#include <stdexcept>

#include "engine/schedule.h"
#include "fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = astraea::fuzz::as_file(data, size, ".json");
  astraea::TokenBudgetSchedule s;
  try {
    s = astraea::read_schedule(path);
  } catch (const std::invalid_argument&) {
    return 0;
  } catch (const std::runtime_error&) {
    return 0;
  }
  try {  // what it read passes its own validation
    astraea::validate_schedule(s, path, s.model, s.steps());
  } catch (const std::exception&) {
    std::abort();
  }
  return 0;
}
