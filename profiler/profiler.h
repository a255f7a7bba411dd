// The profiler: attributes device activity (or, on the CPU, wall-clock time) to the step, block
// and operation whose range launched it, and exports the trace as Chrome/Perfetto JSON.
//
// Attribution works through external correlation: each distinct range path (step, block, op) gets
// an id, pushed to the activity source while the range is open, so every API call made inside it
// is tagged; the source's records then map back through their correlation ids. A traced pass is
// always separate from a timed pass: tracing costs time that no reported latency may include.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/ranges.h"
#include "profiler/activity.h"

namespace astraea::profiler {

/// Where work belongs: -1 is "outside any step/block".
struct RangePath {
  int64_t step = -1, block = -1;
  Op op = Op::kNone;
  bool operator<(const RangePath& o) const;
  bool operator==(const RangePath& o) const { return step == o.step && block == o.block && op == o.op; }
};

/// Time attributed to one range path and activity kind.
struct OpTime {
  RangePath where;
  std::string kind;  ///< "kernel", "memcpy", "memset", or "wall" for wall-clock ranges
  uint64_t total_ns = 0;
  int64_t count = 0;
};

struct Attribution {
  std::vector<OpTime> ops;        ///< sorted by path, then kind
  uint64_t attributed_ns = 0;     ///< device time whose launch was inside some range
  uint64_t unattributed_ns = 0;   ///< device time launched outside every range, or uncorrelated
  int64_t unattributed_count = 0;
  /// Device time per step (the sum over its blocks and operations), for checking against timers.
  std::map<int64_t, uint64_t> step_ns;
};

/// Attributes BATCH: PATHS[id - 1] is the range path of external id `id`.
Attribution attribute(const ActivityBatch& batch, const std::vector<RangePath>& paths);

/// A host range timed by the wall clock (CPU mode, and the host side of a device trace).
struct WallRange {
  RangePath path;
  uint64_t start_ns = 0, end_ns = 0;  ///< steady clock
};

/// What a profiling pass produced.
struct Profile {
  bool device_traced = false;  ///< false: times are wall-clock (CPU, or tracing was unavailable)
  std::string clock;           ///< "cupti" or "wall"
  Attribution attribution;
  ActivityBatch activity;
  std::vector<RangePath> paths;  ///< by external id - 1
  std::vector<WallRange> host_ranges;
};

/// Records ranges while started. With a device source that starts, device activity is traced and
/// attributed; when the source is absent or fails, WARN is called once with the reason and the
/// pass goes on with wall-clock ranges only. One profiler at a time: start() installs it as the
/// process's range observer.
class Profiler : public RangeObserver {
 public:
  Profiler(std::unique_ptr<ActivitySource> source, std::function<void(const std::string&)> warn);
  ~Profiler() override;
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  void start();
  /// Stops, waits for the device and returns the pass's profile.
  Profile stop();

  void push(const RangeFrame& frame) override;
  void pop() override;

 private:
  uint64_t id_of(const RangePath& path);

  std::unique_ptr<ActivitySource> source_;
  std::function<void(const std::string&)> warn_;
  bool running_ = false, device_ = false;
  std::vector<RangePath> stack_;
  std::vector<uint64_t> open_start_ns_;
  std::map<RangePath, uint64_t> ids_;
  std::vector<RangePath> paths_;
  std::vector<WallRange> host_;
};

/// Attribution of wall-clock ranges: each op-level range's time goes to its path ("wall").
Attribution attribute_wall(const std::vector<WallRange>& ranges);

/// The profile as Chrome trace-event JSON (chrome://tracing, ui.perfetto.dev): host ranges on one
/// track, device records on one track per stream, each device record with its step/block/op.
std::string chrome_trace_json(const Profile& profile);

/// Writes chrome_trace_json to PATH through a temporary file and a rename.
void write_chrome_trace(const Profile& profile, const std::string& path);

/// The traces of several ranks (chrome_trace_json's, in rank order) as one, for Perfetto: rank r's
/// processes become 10 r + their number, named "rank r: ...", so each rank has its own rows. Each
/// rank's tracks keep their own zero (the ranks' steps meet in their collectives).
std::string merge_chrome_traces(const std::vector<std::string>& per_rank);
/// Writes a trace's TEXT to PATH through a temporary file and a rename.
void write_trace_text(const std::string& text, const std::string& path);

}  // namespace astraea::profiler
