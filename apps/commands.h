// The subcommands of astraea-bench, each registered from its own file.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "db/store.h"

namespace astraea::engine {
class Accelerator;
}

namespace astraea::app {

/// A problem with the command line found after parsing: exit code 2.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// The command ran to its end with this exit status and has said why (launch: a failed rank's
/// status); main prints nothing more.
struct ExitCode {
  int code = 1;
};

/// Whether `text` ends with `suffix` (file extensions of --out paths).
bool ends_with(const std::string& text, const std::string& suffix);

/// Throws UsageError unless `path` ends in one of `extensions` and its folder exists.
void check_output_path(const std::string& flag, const std::string& path, const std::vector<std::string>& extensions);

/// Throws UsageError unless the store DB exists (reading commands must not create one).
void require_existing_db(const std::string& db);

/// The flags every model-running command shares: --model, --weights (WEIGHTS_HELP says what its
/// default is) and the video size --frames, --height, --width (0: the preset's).
void add_model_flags(
    CLI::App* sub, std::string& model, std::string& weights, int64_t& frames, int64_t& height, int64_t& width,
    const std::string& weights_help = "safetensors file or 'random' (default: the preset's shipped weights)");
/// The size flags alone (--frames, --height, --width), for commands whose --model repeats.
void add_size_flags(CLI::App* sub, int64_t& frames, int64_t& height, int64_t& width);
/// --device: cpu, cuda or cuda:N, default cpu.
void add_device_flag(CLI::App* sub, std::string& device);
/// --parallel: how a command launched on several ranks splits its work, default auto.
void add_parallel_flag(CLI::App* sub, std::string& parallel);

/// The method --method SPEC names (NAME[:KEY=VALUE,...]), made and checked against STEPS steps of
/// the preset MODEL; a UsageError naming the flag for an unknown method, a bad parameter, or a run
/// it cannot do.
std::shared_ptr<const engine::Accelerator> method_flag(const std::string& spec, const std::string& model,
                                                       int64_t steps);

/// Adds `launch` to the app.
void register_launch(CLI::App& app);
/// Adds `generate` to the app.
void register_generate(CLI::App& app);
/// Adds `train` to the app.
void register_train(CLI::App& app);
/// Adds `query` to the app.
void register_query(CLI::App& app);
/// Adds `profile` to the app.
void register_profile(CLI::App& app);
/// Adds `report` to the app.
void register_report(CLI::App& app);
/// Adds `tune` to the app.
void register_tune(CLI::App& app);
/// Adds `export` (a study's trial as a schedule file) to the app.
void register_export(CLI::App& app);
/// Adds `methods` (the registered acceleration methods) to the app.
void register_methods(CLI::App& app);
/// Adds `step-costs` to the app.
void register_step_costs(CLI::App& app);
/// Adds `score` to the app.
void register_score(CLI::App& app);
/// Adds `sweep` to the app.
void register_sweep(CLI::App& app);

/// Writes TRIAL of study STUDY_ID (named STUDY) as a schedule file for MODEL at PATH, with
/// PROVENANCE and the git revision, selecting in SEGMENTS (a study tuned for that many ranks),
/// and records the export in STORE.
void export_trial(db::Store& store, int64_t study_id, const std::string& study, const std::string& model,
                  const db::Trial& trial, const std::string& path,
                  std::map<std::string, std::string> provenance, int64_t segments = 1);

/// Runs the subcommand that was parsed.
void run_selected(CLI::App& app);

/// Binds a subcommand to the function that runs it.
void on_run(CLI::App* sub, std::function<void()> run);

}  // namespace astraea::app
