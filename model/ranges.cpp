#include "model/ranges.h"

#include <atomic>
#include <string>

#include "astraea/config.h"
#if ASTRAEA_HAS_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace astraea {
namespace {

std::atomic<RangeObserver*> g_observer{nullptr};

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::kNone:
      return "";
    case Op::kSelection:
      return "selection";
    case Op::kGather:
      return "gather";
    case Op::kProjections:
      return "projections";
    case Op::kAttention:
      return "attention";
    case Op::kFeedForward:
      return "feed-forward";
    case Op::kScatter:
      return "scatter";
    case Op::kNorm:
      return "norm";
    case Op::kComm:
      return "comm";
    case Op::kOther:
      return "other";
  }
  return "other";
}

void set_range_observer(RangeObserver* observer) { g_observer.store(observer); }

ScopedRange::ScopedRange(const RangeFrame& frame) {
#if ASTRAEA_HAS_NVTX
  if (frame.level == RangeFrame::Level::kOp) {
    nvtxRangePushA(op_name(frame.op));
  } else {
    const std::string name =
        (frame.level == RangeFrame::Level::kStep ? "step " : "block ") + std::to_string(frame.index);
    nvtxRangePushA(name.c_str());
  }
  active_ = true;
#endif
  if (auto* o = g_observer.load(std::memory_order_relaxed)) {
    o->push(frame);
    active_ = true;
  }
}

ScopedRange::~ScopedRange() {
  if (!active_) return;
#if ASTRAEA_HAS_NVTX
  nvtxRangePop();
#endif
  if (auto* o = g_observer.load(std::memory_order_relaxed)) o->pop();
}

}  // namespace astraea
