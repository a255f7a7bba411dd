#include "profiler/profiler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <tuple>
#include <unordered_map>

#include "io/atomic_file.h"

namespace astraea::profiler {
namespace {

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

std::string range_name(const RangePath& p) {
  if (p.op != Op::kNone) return op_name(p.op);
  if (p.block >= 0) return "block " + std::to_string(p.block);
  if (p.step >= 0) return "step " + std::to_string(p.step);
  return "(outside ranges)";
}

nlohmann::json path_args(const RangePath& p) {
  nlohmann::json a;
  if (p.step >= 0) a["step"] = p.step;
  if (p.block >= 0) a["block"] = p.block;
  if (p.op != Op::kNone) a["op"] = op_name(p.op);
  return a;
}

// Folds per-(path, kind) sums into the sorted OpTime list.
void finish(std::map<std::pair<RangePath, std::string>, OpTime>& sums, Attribution& a) {
  for (auto& [key, t] : sums) a.ops.push_back(std::move(t));
}

// Which range launched each activity record: CUPTI's correlation id leads to our external id,
// which is 1 + the index of the range's path (0: launched outside every range).
class Launchers {
 public:
  Launchers(const ActivityBatch& batch, const std::vector<RangePath>& paths) : paths_(paths) {
    for (const auto& c : batch.correlations) external_[c.correlation_id] = c.external_id;
  }
  /// The path of the range that launched R, or null when none did.
  const RangePath* path_of(const ActivityRecord& r) const {
    const auto it = external_.find(r.correlation_id);
    if (it == external_.end() || it->second == 0 || it->second > paths_.size()) return nullptr;
    return &paths_[it->second - 1];
  }

 private:
  const std::vector<RangePath>& paths_;
  std::unordered_map<uint32_t, uint64_t> external_;
};

}  // namespace

bool RangePath::operator<(const RangePath& o) const {
  return std::make_tuple(step, block, static_cast<int>(op)) < std::make_tuple(o.step, o.block, static_cast<int>(o.op));
}

Attribution attribute(const ActivityBatch& batch, const std::vector<RangePath>& paths) {
  const Launchers launchers(batch, paths);
  Attribution a;
  std::map<std::pair<RangePath, std::string>, OpTime> sums;
  for (const auto& r : batch.records) {
    const uint64_t ns = r.end_ns > r.start_ns ? r.end_ns - r.start_ns : 0;
    const RangePath* launcher = launchers.path_of(r);
    if (!launcher) {
      a.unattributed_ns += ns;
      ++a.unattributed_count;
      continue;
    }
    const RangePath& path = *launcher;
    auto& t = sums[{path, activity_kind_name(r.kind)}];
    t.where = path;
    t.kind = activity_kind_name(r.kind);
    t.total_ns += ns;
    ++t.count;
    a.attributed_ns += ns;
    if (path.step >= 0) a.step_ns[path.step] += ns;
  }
  finish(sums, a);
  return a;
}

Attribution attribute_wall(const std::vector<WallRange>& ranges) {
  Attribution a;
  std::map<std::pair<RangePath, std::string>, OpTime> sums;
  for (const auto& r : ranges) {
    const uint64_t ns = r.end_ns > r.start_ns ? r.end_ns - r.start_ns : 0;
    if (r.path.op == Op::kNone) {
      // A step range's length is the step's time; blocks are covered by their operations.
      if (r.path.block < 0 && r.path.step >= 0) a.step_ns[r.path.step] += ns;
      continue;
    }
    auto& t = sums[{r.path, "wall"}];
    t.where = r.path;
    t.kind = "wall";
    t.total_ns += ns;
    ++t.count;
    a.attributed_ns += ns;
  }
  finish(sums, a);
  return a;
}

Profiler::Profiler(std::unique_ptr<ActivitySource> source, std::function<void(const std::string&)> warn)
    : source_(std::move(source)), warn_(std::move(warn)) {}

Profiler::~Profiler() {
  if (running_) {
    set_range_observer(nullptr);
    if (device_) source_->stop();
  }
}

void Profiler::start() {
  if (running_) throw std::logic_error("Profiler::start: already started");
  stack_.clear();
  open_start_ns_.clear();
  ids_.clear();
  paths_.clear();
  host_.clear();
  device_ = false;
  if (source_) {
    std::string why;
    device_ = source_->start(&why);
    if (!device_ && warn_) warn_("device tracing is off (" + why + "); this pass records wall-clock ranges only");
  }
  running_ = true;
  set_range_observer(this);
}

uint64_t Profiler::id_of(const RangePath& path) {
  auto [it, inserted] = ids_.emplace(path, paths_.size() + 1);
  if (inserted) paths_.push_back(path);
  return it->second;
}

void Profiler::push(const RangeFrame& frame) {
  RangePath p = stack_.empty() ? RangePath{} : stack_.back();
  switch (frame.level) {
    case RangeFrame::Level::kStep: p = RangePath{frame.index, -1, Op::kNone}; break;
    case RangeFrame::Level::kBlock: p.block = frame.index; p.op = Op::kNone; break;
    case RangeFrame::Level::kOp: p.op = frame.op; break;
  }
  stack_.push_back(p);
  if (device_) source_->push_external_id(id_of(p));
  open_start_ns_.push_back(now_ns());
}

void Profiler::pop() {
  if (stack_.empty()) return;  // a range opened before start()
  host_.push_back({stack_.back(), open_start_ns_.back(), now_ns()});
  stack_.pop_back();
  open_start_ns_.pop_back();
  if (device_) source_->pop_external_id();
}

Profile Profiler::stop() {
  if (!running_) throw std::logic_error("Profiler::stop: not started");
  set_range_observer(nullptr);
  running_ = false;
  Profile p;
  p.device_traced = device_;
  p.clock = device_ ? "cupti" : "wall";
  p.host_ranges = std::move(host_);
  p.paths = std::move(paths_);
  if (device_) {
    p.activity = source_->stop();
    p.attribution = attribute(p.activity, p.paths);
  } else {
    p.attribution = attribute_wall(p.host_ranges);
  }
  device_ = false;
  return p;
}

std::string chrome_trace_json(const Profile& profile) {
  nlohmann::json events = nlohmann::json::array();
  auto meta = [&](int pid, const std::string& name) {
    events.push_back({{"ph", "M"}, {"pid", pid}, {"name", "process_name"}, {"args", {{"name", name}}}});
  };
  meta(1, "host ranges (wall clock)");
  uint64_t host0 = UINT64_MAX;
  for (const auto& r : profile.host_ranges) host0 = std::min(host0, r.start_ns);
  for (const auto& r : profile.host_ranges) {
    events.push_back({{"ph", "X"}, {"pid", 1}, {"tid", 1}, {"name", range_name(r.path)},
                      {"ts", static_cast<double>(r.start_ns - host0) / 1e3},
                      {"dur", static_cast<double>(r.end_ns - r.start_ns) / 1e3}, {"args", path_args(r.path)}});
  }
  if (!profile.activity.records.empty()) {
    meta(2, "device (CUPTI clock)");
    const Launchers launchers(profile.activity, profile.paths);
    uint64_t dev0 = UINT64_MAX;
    for (const auto& r : profile.activity.records) dev0 = std::min(dev0, r.start_ns);
    for (const auto& r : profile.activity.records) {
      nlohmann::json args;
      if (const RangePath* launcher = launchers.path_of(r)) args = path_args(*launcher);
      args["kind"] = activity_kind_name(r.kind);
      if (r.bytes) args["bytes"] = r.bytes;
      events.push_back({{"ph", "X"}, {"pid", 2}, {"tid", r.stream}, {"name", r.name},
                        {"ts", static_cast<double>(r.start_ns - dev0) / 1e3},
                        {"dur", static_cast<double>(r.end_ns - r.start_ns) / 1e3}, {"args", args}});
    }
  }
  nlohmann::json doc{{"traceEvents", events},
                     {"displayTimeUnit", "ms"},
                     {"otherData", {{"clock", profile.clock},
                                    {"note", "host and device tracks each start at their own zero"}}}};
  return doc.dump();
}

void write_chrome_trace(const Profile& profile, const std::string& path) {
  write_trace_text(chrome_trace_json(profile), path);
}

void write_trace_text(const std::string& text, const std::string& path) {
  if (!write_file_atomically(path, text + "\n").empty())
    throw std::runtime_error("--trace: cannot write '" + path + "'");
}

std::string merge_chrome_traces(const std::vector<std::string>& per_rank) {
  nlohmann::json events = nlohmann::json::array(), doc;
  for (size_t r = 0; r < per_rank.size(); ++r) {
    doc = nlohmann::json::parse(per_rank[r]);
    for (auto& e : doc["traceEvents"]) {
      e["pid"] = static_cast<int>(10 * r) + e["pid"].get<int>();
      if (e["ph"] == "M" && e["name"] == "process_name")
        e["args"]["name"] = "rank " + std::to_string(r) + ": " + e["args"]["name"].get<std::string>();
      events.push_back(std::move(e));
    }
  }
  doc["traceEvents"] = std::move(events);  // the last rank's clock and note stand for all
  doc["otherData"]["ranks"] = per_rank.size();
  return doc.dump();
}

}  // namespace astraea::profiler
