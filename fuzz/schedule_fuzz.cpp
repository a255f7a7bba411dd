// Schedule files on arbitrary bytes: read_schedule returns a schedule that passes its own
// validation, or throws std::invalid_argument / std::runtime_error naming the file.
#include <cstdlib>
#include <stdexcept>

#include "engine/schedule.h"
#include "fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = astraea::fuzz::as_file(data, size, ".json");
  try {
    const auto s = astraea::read_schedule(path);
    astraea::validate_schedule(s, path, s.model, static_cast<int64_t>(s.budgets.size()));
  } catch (const std::invalid_argument&) {
  } catch (const std::runtime_error&) {
  }
  return 0;
}
