#include "parallel/lockstep.h"

#include <ATen/ATen.h>

#include <algorithm>
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

std::vector<std::string> gather_text(const Collective& world, const std::string& text, c10::Device device) {
  const auto on = at::TensorOptions().device(device);
  auto sizes =
      world.all_gather(at::full({1}, static_cast<int64_t>(text.size()), on.dtype(at::kLong)), 0).cpu();
  const int64_t longest = sizes.max().item<int64_t>();
  auto mine = at::zeros({longest}, at::TensorOptions().dtype(at::kByte));
  std::copy(text.begin(), text.end(), mine.data_ptr<uint8_t>());
  const auto all = world.all_gather(mine.to(device), 0).cpu().contiguous();
  std::vector<std::string> out;
  for (int r = 0; r < world.size(); ++r) {
    const auto* bytes = all.data_ptr<uint8_t>() + r * longest;
    out.emplace_back(reinterpret_cast<const char*>(bytes), static_cast<size_t>(sizes[r].item<int64_t>()));
  }
  return out;
}

}  // namespace astraea::parallel
