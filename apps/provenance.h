// What every stored run carries besides its numbers, and the list flags that several commands share.
#pragma once

#include <string>
#include <vector>

namespace astraea::app {

/// The source tree's git revision (with "-dirty" when it has uncommitted changes), or "unknown"
/// when the binary runs away from its checkout.
std::string git_revision();

/// The command line this process was started with (for the store's provenance), shell-quoted.
void set_command_line(int argc, char** argv);
const std::string& command_line();

/// Parses a comma-separated list of numbers for FLAG ("1,0.7,0.5"); throws UsageError naming the
/// flag and the bad item. Values must lie in [lo, hi].
std::vector<double> parse_number_list(const std::string& flag, const std::string& text, double lo, double hi);

/// A 64-bit FNV-1a digest of a file's bytes, as 16 hex digits ("" for an empty path); throws
/// UsageError naming FLAG when the file cannot be read. Tells two weight files apart in stored keys.
std::string file_digest(const std::string& path, const std::string& flag);

/// file_digest of the weights --model MODEL --weights WEIGHTS generates with ("" for random ones).
std::string weights_digest(const std::string& model, const std::string& weights);

/// Splits a comma-separated list, dropping empty items.
std::vector<std::string> split_list(const std::string& text);

}  // namespace astraea::app
