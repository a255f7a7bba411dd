// CUPTI activity tracing as an ActivitySource: kernel, memcpy and memset records plus the external
// correlations that tie each one to the range that launched it. CUPTI hands records back in
// buffers, asynchronously, on its own thread; they are translated there and stored under a mutex.
// Its callbacks are process-wide, so at most one source traces at a time. Without CUPTI in the
// build, make_cupti_source() returns nullptr and the profiler falls back to wall-clock ranges.
#include "profiler/activity.h"

#include "astraea/config.h"

#if ASTRAEA_HAS_CUPTI
#include <cupti.h>
#include <cuda_runtime_api.h>
#include <cxxabi.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <utility>
#endif

namespace astraea::profiler {

const char* activity_kind_name(ActivityKind kind) {
  switch (kind) {
    case ActivityKind::kKernel: return "kernel";
    case ActivityKind::kMemcpy: return "memcpy";
    case ActivityKind::kMemset: return "memset";
  }
  return "unknown";
}

#if ASTRAEA_HAS_CUPTI

namespace {

// Large enough that a traced pass rarely needs many buffers; CUPTI requires 8-byte alignment.
constexpr size_t kBufferSize = 8u << 20;
constexpr size_t kBufferAlign = 8;

constexpr CUpti_ExternalCorrelationKind kExternalKind = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;

struct TracedKind {
  CUpti_ActivityKind kind;
  const char* name;
};
// CUPTI writes an external-correlation record only in front of an API activity record, so the
// runtime and driver API kinds must be on for kernels to reach their ranges; their own records are
// skipped when translated. Without them (the first GPU run, 2026-11-28) every kernel arrived and none
// was attributed.
constexpr TracedKind kTracedKinds[] = {
    {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, "CONCURRENT_KERNEL"},
    {CUPTI_ACTIVITY_KIND_MEMCPY, "MEMCPY"},
    {CUPTI_ACTIVITY_KIND_MEMSET, "MEMSET"},
    {CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, "EXTERNAL_CORRELATION"},
    {CUPTI_ACTIVITY_KIND_RUNTIME, "RUNTIME"},
    {CUPTI_ACTIVITY_KIND_DRIVER, "DRIVER"},
};

class CuptiSource;

// The one source allowed to trace: claimed in start(), released at the end of stop().
std::atomic<CuptiSource*> g_active{nullptr};

// Where the buffer-completed callback appends, or nullptr when nobody is listening (buffers that
// arrive then, e.g. at process exit, are just freed). Separate from g_active so the callback never
// waits on anything but this short critical section; CUPTI is never called while it is held.
std::mutex g_sink_mu;
ActivityBatch* g_sink = nullptr;

// Depth of this thread's pushes that reached CUPTI, so pops stay balanced with them even when
// tracing stopped in between (CUPTI's external-id stack is per thread and outlives the source).
thread_local int t_pushed = 0;

std::string cupti_error(CUptiResult result, const std::string& where) {
  const char* text = nullptr;
  if (cuptiGetResultString(result, &text) != CUPTI_SUCCESS || text == nullptr) text = "unknown error";
  return "CUPTI: " + std::string(text) + " in " + where;
}

std::string demangle(const char* name) {
  if (name == nullptr) return "kernel";
  int status = 0;
  char* pretty = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || pretty == nullptr) {
    std::free(pretty);
    return name;  // extern "C" kernels and anything else not Itanium-mangled
  }
  std::string out(pretty);
  std::free(pretty);
  return out;
}

// A forced flush can return records the device has not finished timing (end still 0); their
// durations would be garbage, so they count as lost instead.
bool incomplete(uint64_t start, uint64_t end) { return end == 0 || end < start; }

const char* memcpy_name(uint8_t copy_kind) {
  switch (copy_kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA: return "HtoA";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH: return "AtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOA: return "AtoA";
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOD: return "AtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOA: return "DtoA";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "DtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "HtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "PtoP";
    default: return "memcpy";
  }
}

void CUPTIAPI on_buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  // A null buffer makes CUPTI drop records (and count them), which is the right failure here.
  void* p = std::aligned_alloc(kBufferAlign, kBufferSize);
  *buffer = static_cast<uint8_t*>(p);
  *size = p != nullptr ? kBufferSize : 0;
  *max_records = 0;
}

// Translates one buffer. Runs on CUPTI's thread (or inside a flush): nothing may escape it.
void CUPTIAPI on_buffer_completed(CUcontext context, uint32_t stream_id, uint8_t* buffer,
                                  size_t /*size*/, size_t valid_size) {
  try {
    ActivityBatch local;
    // The fields every timed record shares; a record still open at a forced flush is dropped.
    auto add = [&](ActivityKind kind, std::string name, const auto& rec, uint64_t bytes) {
      if (incomplete(rec.start, rec.end)) {
        ++local.dropped;
        return;
      }
      ActivityRecord r;
      r.kind = kind;
      r.name = std::move(name);
      r.start_ns = rec.start;
      r.end_ns = rec.end;
      r.correlation_id = rec.correlationId;
      r.stream = rec.streamId;
      r.device = rec.deviceId;
      r.bytes = bytes;
      local.records.push_back(std::move(r));
    };
    if (buffer != nullptr && valid_size > 0) {
      CUpti_Activity* raw = nullptr;
      while (cuptiActivityGetNextRecord(buffer, valid_size, &raw) == CUPTI_SUCCESS) {
        switch (raw->kind) {
          case CUPTI_ACTIVITY_KIND_KERNEL:
          case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
            const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(raw);
            add(ActivityKind::kKernel, demangle(k->name), *k, 0);
            break;
          }
          case CUPTI_ACTIVITY_KIND_MEMCPY: {
            const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(raw);
            add(ActivityKind::kMemcpy, memcpy_name(m->copyKind), *m, m->bytes);
            break;
          }
          case CUPTI_ACTIVITY_KIND_MEMSET: {
            const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(raw);
            add(ActivityKind::kMemset, "memset", *m, m->bytes);
            break;
          }
          case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
            const auto* e = reinterpret_cast<const CUpti_ActivityExternalCorrelation*>(raw);
            if (e->externalKind != kExternalKind) break;  // someone else's ids
            local.correlations.push_back({e->correlationId, e->externalId});
            break;
          }
          default:
            break;
        }
      }
      size_t dropped = 0;
      if (cuptiActivityGetNumDroppedRecords(context, stream_id, &dropped) == CUPTI_SUCCESS) {
        local.dropped += dropped;
      }
    }
    std::lock_guard<std::mutex> lock(g_sink_mu);
    if (g_sink != nullptr) {
      g_sink->records.insert(g_sink->records.end(), std::make_move_iterator(local.records.begin()),
                             std::make_move_iterator(local.records.end()));
      g_sink->correlations.insert(g_sink->correlations.end(), local.correlations.begin(),
                                  local.correlations.end());
      g_sink->dropped += local.dropped;
    }
  } catch (...) {
    // Out of memory while translating: the buffer's records are lost, the process goes on.
  }
  std::free(buffer);
}

class CuptiSource final : public ActivitySource {
 public:
  CuptiSource() = default;
  CuptiSource(const CuptiSource&) = delete;
  CuptiSource& operator=(const CuptiSource&) = delete;
  ~CuptiSource() override {
    if (running_) (void)stop();
  }

  bool start(std::string* why_not) override {
    if (running_) return true;
    CuptiSource* expected = nullptr;
    if (!g_active.compare_exchange_strong(expected, this)) {
      return fail(why_not, "CUPTI: another activity source is already tracing in this process");
    }
    try {
      // Checked first so a GPU-less host gets a plain reason rather than CUPTI's error codes.
      int devices = 0;
      const cudaError_t ce = cudaGetDeviceCount(&devices);
      if (ce != cudaSuccess) {
        release();
        return fail(why_not, std::string("no CUDA device (") + cudaGetErrorString(ce) + ")");
      }
      if (devices <= 0) {
        release();
        return fail(why_not, "no CUDA device");
      }
      const CUptiResult reg = cuptiActivityRegisterCallbacks(on_buffer_requested, on_buffer_completed);
      if (reg != CUPTI_SUCCESS) {
        release();
        return fail(why_not, cupti_error(reg, "cuptiActivityRegisterCallbacks"));
      }
      // Reading the count resets it, so an earlier session's losses are not reported as ours.
      size_t stale = 0;
      (void)cuptiActivityGetNumDroppedRecords(nullptr, 0, &stale);
      {
        std::lock_guard<std::mutex> lock(g_sink_mu);
        batch_ = ActivityBatch{};
        g_sink = &batch_;
      }
      for (const TracedKind& k : kTracedKinds) {
        const CUptiResult r = cuptiActivityEnable(k.kind);
        if (r != CUPTI_SUCCESS) {
          // Typically no permission to profile, or another CUPTI client (Nsight, Kineto) holds it.
          std::string reason = cupti_error(r, std::string("cuptiActivityEnable(") + k.name + ")");
          teardown();
          release();
          return fail(why_not, std::move(reason));
        }
        ++enabled_;
      }
    } catch (...) {
      teardown();
      release();
      return fail(why_not, "CUPTI: out of memory while starting");
    }
    running_ = true;
    return true;
  }

  void push_external_id(uint64_t id) override {
    if (!running_) return;  // creating or idling a source must not initialise CUPTI
    if (cuptiActivityPushExternalCorrelationId(kExternalKind, id) == CUPTI_SUCCESS) ++t_pushed;
  }

  void pop_external_id() override {
    if (t_pushed <= 0) return;
    uint64_t last = 0;
    (void)cuptiActivityPopExternalCorrelationId(kExternalKind, &last);
    --t_pushed;
  }

  ActivityBatch stop() override {
    ActivityBatch out;
    if (!running_) return out;
    // Errors here belong to the traced work, which reports them itself; the trace still ends.
    (void)cudaDeviceSynchronize();
    (void)cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    teardown();  // disables, then flushes again for anything recorded in between
    size_t dropped = 0;
    const bool have_dropped =
        cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS;
    {
      std::lock_guard<std::mutex> lock(g_sink_mu);
      if (have_dropped) batch_.dropped += dropped;
      out = std::move(batch_);
      batch_ = ActivityBatch{};
    }
    running_ = false;
    release();
    return out;
  }

 private:
  static bool fail(std::string* why_not, std::string reason) {
    if (why_not != nullptr) *why_not = std::move(reason);
    return false;
  }

  // Disables what this source enabled and drains CUPTI's buffers into batch_, then detaches the
  // sink. Never throws.
  void teardown() noexcept {
    for (int i = enabled_ - 1; i >= 0; --i) (void)cuptiActivityDisable(kTracedKinds[i].kind);
    const bool was_enabled = enabled_ > 0;
    enabled_ = 0;
    if (was_enabled) (void)cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    std::lock_guard<std::mutex> lock(g_sink_mu);
    if (g_sink == &batch_) g_sink = nullptr;
  }

  void release() noexcept {
    CuptiSource* self = this;
    g_active.compare_exchange_strong(self, nullptr);
  }

  std::atomic<bool> running_{false};
  int enabled_ = 0;     // how many of kTracedKinds (a prefix) are enabled
  ActivityBatch batch_;  // filled by on_buffer_completed through g_sink, under g_sink_mu
};

}  // namespace

std::unique_ptr<ActivitySource> make_cupti_source() { return std::make_unique<CuptiSource>(); }

#else  // !ASTRAEA_HAS_CUPTI

std::unique_ptr<ActivitySource> make_cupti_source() { return nullptr; }

#endif  // ASTRAEA_HAS_CUPTI

}  // namespace astraea::profiler
