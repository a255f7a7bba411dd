#include "apps/commands.h"

#include <filesystem>
#include <map>

#include "engine/methods.h"

namespace astraea::app {
namespace {
std::map<const CLI::App*, std::function<void()>>& runners() {
  static std::map<const CLI::App*, std::function<void()>> r;
  return r;
}
}  // namespace

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void check_output_path(const std::string& flag, const std::string& path, const std::vector<std::string>& extensions) {
  bool known = false;
  std::string list;
  for (const auto& ext : extensions) {
    known |= path.size() > ext.size() && ends_with(path, ext);
    list += (list.empty() ? "" : " or ") + ext;
  }
  if (!known) throw UsageError(flag + " '" + path + "' must end in " + list);
  const auto parent = std::filesystem::absolute(path).parent_path();
  if (!std::filesystem::is_directory(parent)) {
    throw UsageError(flag + " '" + path + "': folder " + parent.string() + " does not exist");
  }
}

void require_existing_db(const std::string& db) {
  if (!std::filesystem::exists(db)) throw UsageError("--db " + db + " does not exist");
}

void add_model_flags(CLI::App* sub, std::string& model, std::string& weights, int64_t& frames,
                     int64_t& height, int64_t& width, const std::string& weights_help) {
  sub->add_option("--model", model, "model preset")->default_val(model);
  sub->add_option("--weights", weights, weights_help);
  add_size_flags(sub, frames, height, width);
}

void add_size_flags(CLI::App* sub, int64_t& frames, int64_t& height, int64_t& width) {
  sub->add_option("--frames", frames, "video frames (default: the preset's)");
  sub->add_option("--height", height, "video height in pixels");
  sub->add_option("--width", width, "video width in pixels");
}

void add_device_flag(CLI::App* sub, std::string& device) {
  sub->add_option("--device", device, "cpu, cuda or cuda:N")->default_val("cpu");
}

void add_parallel_flag(CLI::App* sub, std::string& parallel) {
  sub->add_option("--parallel", parallel,
                  "launched on several ranks: auto, or cfg=C,ulysses=U,ring=R (C x U x R = the ranks; "
                  "docs/parallel.md)")
      ->default_val("auto");
}

std::shared_ptr<const engine::Accelerator> method_flag(const std::string& spec, const std::string& model,
                                                       int64_t steps) {
  std::shared_ptr<const engine::Accelerator> method;
  try {
    method = engine::make_method(spec);
  } catch (const std::invalid_argument& e) {
    throw UsageError("--method " + spec + ": " + e.what());
  }
  if (const auto why = method->can_run(model, steps); !why.empty())
    throw UsageError("--method " + spec + ": " + why);
  return method;
}

void on_run(CLI::App* sub, std::function<void()> run) { runners()[sub] = std::move(run); }

void run_selected(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands()) runners().at(sub)();
}

}  // namespace astraea::app
