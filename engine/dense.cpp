// The dense method: every step computes every token of every block. The reference the others are
// measured against.
#include <ATen/ATen.h>

#include "engine/methods.h"
#include "model/denoiser.h"

namespace astraea::engine {
namespace {

class DenseBranch : public BranchState {
 public:
  void count(int64_t block_tokens) { computed_tokens_ += block_tokens; }
};

class Dense : public Accelerator {
 public:
  std::string name() const override { return "dense"; }
  nlohmann::json params() const override { return nlohmann::json::object(); }
  std::string can_run(const std::string&, int64_t) const override { return {}; }
  std::unique_ptr<BranchState> new_branch() const override { return std::make_unique<DenseBranch>(); }
  bool skips(const CallInfo&) const override { return false; }
  at::Tensor call(const Denoiser& model, const at::Tensor& latents, const CallInfo& call,
                  const at::Tensor& context, BranchState& branch) const override {
    static_cast<DenseBranch&>(branch).count(call_tokens(model, latents) * model.config().layers);
    branch.act("dense");
    return model.forward(latents, call.timestep, context);
  }
};

}  // namespace

MethodInfo dense_method() {
  return {"dense", "every token of every block at every step (the reference)", {}, [](const MethodParams&) {
            return std::make_shared<const Dense>();
          }};
}

}  // namespace astraea::engine
