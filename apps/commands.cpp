#include "apps/commands.h"

#include <map>

namespace astraea::app {
namespace {
std::map<const CLI::App*, std::function<void()>>& runners() {
  static std::map<const CLI::App*, std::function<void()>> r;
  return r;
}
}  // namespace

void on_run(CLI::App* sub, std::function<void()> run) { runners()[sub] = std::move(run); }

void run_selected(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands()) runners().at(sub)();
}

}  // namespace astraea::app
