#include "parallel/lockstep.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace astraea::parallel {

Lockstep::Lockstep(std::shared_ptr<const Collective> world, c10::Device device)
    : world_(std::move(world)), device_(device) {}

// A broadcast from rank 0 as a sum: the others add zero.
void Lockstep::announce(int64_t action) const {
  auto t = at::full({1}, action + 1, at::TensorOptions().dtype(at::kLong).device(device_));
  world_->all_reduce_sum(t);
}

int64_t Lockstep::hear() const {
  auto t = at::zeros({1}, at::TensorOptions().dtype(at::kLong).device(device_));
  world_->all_reduce_sum(t);
  return t.cpu().item<int64_t>() - 1;
}

std::vector<std::function<double()>> Lockstep::lead(
    const std::vector<std::function<double()>>& actions) const {
  if (world_->rank() != 0) throw std::logic_error("Lockstep::lead runs on rank 0");
  std::vector<std::function<double()>> told;
  for (size_t i = 0; i < actions.size(); ++i) {
    told.push_back([this, i, action = actions[i]] {
      announce(static_cast<int64_t>(i));
      return action();
    });
  }
  return told;
}

void Lockstep::finish() const { announce(-1); }

void Lockstep::follow(const std::vector<std::function<double()>>& actions) const {
  for (int64_t i = hear(); i >= 0; i = hear()) {
    if (i >= static_cast<int64_t>(actions.size()))
      throw std::logic_error("rank 0 asked for action " + std::to_string(i) + " of " +
                             std::to_string(actions.size()));
    actions[static_cast<size_t>(i)]();
  }
}

}  // namespace astraea::parallel
