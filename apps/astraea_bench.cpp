// astraea-bench: the one command line of Astraea. Every error becomes one `error: ...` line and
// an exit code: 2 for usage, 1 for failure.
#include <c10/util/Exception.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <stdexcept>

#include "apps/commands.h"
#include "apps/provenance.h"
#include "io/field_error.h"
#include "model/cpu_threads.h"

namespace {

// LibTorch's own messages carry a C++ backtrace; users get the first line that says something
// (some, such as a peer's closed connection, begin with a blank one), --verbose the rest.
std::string short_message(const c10::Error& e) {
  const std::string m = e.what_without_backtrace();
  std::string first;
  for (size_t at = 0; at < m.size() && first.empty();) {
    const size_t end = std::min(m.find('\n', at), m.size());
    first = m.substr(at, end - at);
    if (first.find_first_not_of(" \t\r") == std::string::npos) first.clear();
    at = end + 1;
  }
  if (first.empty()) first = "LibTorch raised an error without a message (run with --verbose)";
  if (m.find("out of memory") != std::string::npos) {
    return "out of GPU memory: " + first + " (try fewer --frames or a smaller --height/--width)";
  }
  return first;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    astraea::configure_cpu_threads();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  astraea::app::set_command_line(argc, argv);

  CLI::App app{"astraea-bench: token-wise acceleration of video diffusion transformers"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("--verbose", verbose, "print full error details");
  astraea::app::register_generate(app);
  astraea::app::register_methods(app);
  astraea::app::register_train(app);
  astraea::app::register_profile(app);
  astraea::app::register_step_costs(app);
  astraea::app::register_sweep(app);
  astraea::app::register_score(app);
  astraea::app::register_tune(app);
  astraea::app::register_export(app);
  astraea::app::register_report(app);
  astraea::app::register_query(app);
  astraea::app::register_launch(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "error: " << e.what() << " (see --help)\n";
    return 2;
  }

  try {
    astraea::app::run_selected(app);
    return 0;
  } catch (const astraea::app::ExitCode& e) {
    return e.code;
  } catch (const astraea::app::UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const astraea::FieldError& e) {  // the library names fields; here they are flags
    std::cerr << "error: " << e.render("--") << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << short_message(e) << "\n";
    if (verbose) std::cerr << e.what() << "\n";
    return 1;
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    const std::string m = e.what();
    std::cerr << "error: " << (m.empty() ? "an exception without a message" : m) << "\n";
    return 1;
  }
}
