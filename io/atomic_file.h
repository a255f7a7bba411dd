// Small text files (JSON records, schedules, traces, reports) written so that they appear
// complete or not at all: through PATH.tmp, then a rename over PATH.
#pragma once

#include <string>

namespace astraea {

/// Writes TEXT to PATH atomically. Returns "" on success; otherwise, leaving nothing behind,
/// "cannot open" (the folder is missing or not writable) or "write failed".
std::string write_file_atomically(const std::string& path, const std::string& text);

}  // namespace astraea
