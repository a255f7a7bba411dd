// The SQL files of db/schema/, embedded at build time (cmake/embed.cmake).
#pragma once

#include <string_view>

namespace astraea::db {

/// The bytes of db/schema/NAME; std::out_of_range for a file that is not there.
std::string_view embedded_file(std::string_view name);

}  // namespace astraea::db
