// astraea-bench methods: the registered acceleration methods with their parameters and defaults.
#include <cstdio>

#include "apps/commands.h"
#include "engine/methods.h"

namespace astraea::app {

void register_methods(CLI::App& app) {
  auto* sub =
      app.add_subcommand("methods", "List the acceleration methods --method takes, with their parameters");
  on_run(sub, [] {
    for (const auto& m : engine::methods()) {
      std::printf("%s: %s\n", m.name.c_str(), m.summary.c_str());
      for (const auto& k : m.knobs) {
        std::printf("  %-16s %s%s%s\n", k.name.c_str(), k.doc.c_str(),
                    k.default_value.empty() ? "" : " (default ",
                    k.default_value.empty() ? "" : (k.default_value + ")").c_str());
      }
    }
    std::printf("usage: --method NAME or NAME:KEY=VALUE,KEY=VALUE\n");
  });
}

}  // namespace astraea::app
