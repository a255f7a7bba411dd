// Named ranges around the work of a generation: the sampling step, the block, and the operation
// inside it. Each range is an NVTX range (readable in Nsight Systems) where NVTX is built in, and
// is reported to one observer, which the profiler installs to attribute device activity and to
// time ranges on the CPU. With neither, a range costs a load and a branch.
#pragma once

#include <cstdint>
#include <optional>

namespace astraea {

/// The operations a block's work is attributed to.
/// kComm: the collectives of sequence parallelism (the exchanges around attention, the ring's
/// passes, the gather before the head).
enum class Op {
  kNone,
  kSelection,
  kGather,
  kProjections,
  kAttention,
  kFeedForward,
  kScatter,
  kNorm,
  kComm,
  kOther
};

/// "selection", "gather", "projections", "attention", "feed-forward", "scatter", "norm", "comm", "other";
/// "" for kNone.
const char* op_name(Op op);

/// Where the work inside a range belongs. A step or block of -1 is not known at that level.
struct RangeFrame {
  enum class Level { kStep, kBlock, kOp };
  Level level = Level::kStep;
  int64_t index = -1;  ///< the step or block number (kStep, kBlock)
  Op op = Op::kNone;   ///< kOp only
};

/// Receives every range push and pop, on the thread that issued it.
class RangeObserver {
 public:
  virtual ~RangeObserver() = default;
  virtual void push(const RangeFrame& frame) = 0;
  virtual void pop() = 0;
};

/// Installs OBSERVER (nullptr removes it). Not thread-safe against ranges in flight: install it
/// before the work starts and remove it after.
void set_range_observer(RangeObserver* observer);

/// Opens a range for its lifetime.
class ScopedRange {
 public:
  static ScopedRange step(int64_t index) { return ScopedRange({RangeFrame::Level::kStep, index, Op::kNone}); }
  static ScopedRange block(int64_t index) {
    return ScopedRange({RangeFrame::Level::kBlock, index, Op::kNone});
  }
  explicit ScopedRange(Op op) : ScopedRange(RangeFrame{RangeFrame::Level::kOp, -1, op}) {}
  ~ScopedRange();
  ScopedRange(const ScopedRange&) = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;
  ScopedRange(ScopedRange&& other) noexcept : active_(other.active_) { other.active_ = false; }

 private:
  explicit ScopedRange(const RangeFrame& frame);
  bool active_ = false;
};

/// Consecutive operation ranges: one open at a time, `next` closes it and opens the next, so a
/// block's code can be labelled in sequence without scoping its variables.
class OpSequence {
 public:
  explicit OpSequence(Op first) { range_.emplace(first); }
  void next(Op op) {
    range_.reset();
    range_.emplace(op);
  }
  void end() { range_.reset(); }

 private:
  std::optional<ScopedRange> range_;
};

}  // namespace astraea
