// The report's page, style sheet and script (reports/assets/), embedded at build time
// (cmake/embed.cmake).
#pragma once

#include <string_view>

namespace astraea::reports {

/// The bytes of reports/assets/NAME; std::out_of_range for a file that is not there.
std::string_view embedded_file(std::string_view name);

}  // namespace astraea::reports
