// Device activity as the profiler sees it: kernel, copy and memset records with device timestamps,
// and the external correlations that tie each record to the range that launched it. CUPTI is one
// source of them; tests feed made-up ones.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace astraea::profiler {

enum class ActivityKind { kKernel, kMemcpy, kMemset };
/// "kernel", "memcpy", "memset".
const char* activity_kind_name(ActivityKind kind);

/// One piece of device work. Times are nanoseconds on the device's clock (CUPTI's timestamps).
struct ActivityRecord {
  ActivityKind kind = ActivityKind::kKernel;
  std::string name;             ///< kernel name (demangled where the source can), or "HtoD", "DtoH", "DtoD", ...
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t correlation_id = 0;  ///< the launching API call's correlation id
  uint32_t stream = 0;
  uint32_t device = 0;
  uint64_t bytes = 0;           ///< memcpy and memset only
};

/// CUPTI's EXTERNAL_CORRELATION record: the API call CORRELATION_ID was made while EXTERNAL_ID was
/// the innermost pushed external id.
struct ExternalCorrelation {
  uint32_t correlation_id = 0;
  uint64_t external_id = 0;
};

/// Everything a source collected between start() and stop().
struct ActivityBatch {
  std::vector<ActivityRecord> records;
  std::vector<ExternalCorrelation> correlations;
  uint64_t dropped = 0;  ///< records the source reported lost (buffer overflow)
};

/// A source of device activity.
class ActivitySource {
 public:
  virtual ~ActivitySource() = default;
  /// Begins collecting. Returns false, with a one-line reason in *why_not, when it cannot (no
  /// device, the driver refuses, another profiler holds it); it must leave nothing half-started.
  virtual bool start(std::string* why_not) = 0;
  /// Tags the API calls made from now on by this thread with ID (nesting: a stack).
  virtual void push_external_id(uint64_t id) = 0;
  virtual void pop_external_id() = 0;
  /// Waits for the device, flushes, stops collecting and returns what was collected.
  virtual ActivityBatch stop() = 0;
};

/// CUPTI activity tracing of kernels, copies and memsets with external correlation, where this
/// build has CUPTI; nullptr otherwise. Creating it touches nothing: errors surface from start().
std::unique_ptr<ActivitySource> make_cupti_source();

}  // namespace astraea::profiler
