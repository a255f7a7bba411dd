// The group of processes one generation runs on: a rendezvous through c10d's TCPStore, then c10d's
// Gloo group on the CPU or its NCCL group on CUDA (LibTorch's own, as PyTorch uses them). It is
// the Collective that model/ computes with.
#pragma once

#include <c10/core/Device.h>
#include <c10/util/intrusive_ptr.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "model/collective.h"
#include "parallel/launch_env.h"

namespace c10d {
class Store;
}

namespace astraea::parallel {

class ProcessGroup final : public Collective {
 public:
  /// Joins the group ENV describes: rank 0 serves the rendezvous at MASTER_ADDR:MASTER_PORT and
  /// every rank connects to it; then the collectives run on DEVICE's kind (Gloo for the CPU, NCCL
  /// for CUDA, where this build has it). Throws std::runtime_error naming the address when the
  /// others do not arrive within TIMEOUT, or the device kind has no group in this build.
  static std::unique_ptr<ProcessGroup> join(const LaunchEnv& env, c10::Device device,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~ProcessGroup() override;

  int rank() const override;
  int size() const override;
  at::Tensor all_to_all(const at::Tensor& t, int64_t split_dim, int64_t cat_dim) const override;
  at::Tensor ring_pass(const at::Tensor& t) const override;
  at::Tensor all_gather(const at::Tensor& t, int64_t dim) const override;
  void all_reduce_sum(at::Tensor& t) const override;
  void barrier() const override;
  /// "gloo" or "nccl".
  std::string backend() const;
  /// The group of MEMBERS (ranks of this group, this one among them), on the same rendezvous and
  /// device. Collective over MEMBERS: each of them makes it, and no other rank.
  std::unique_ptr<ProcessGroup> subgroup(const std::vector<int>& members) const;

  struct Impl;

 private:
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  static std::unique_ptr<ProcessGroup> join_group(const LaunchEnv& env, c10::Device device,
                                                  std::chrono::milliseconds timeout);
  static std::unique_ptr<ProcessGroup> make(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                            c10::Device device, const std::string& host,
                                            std::chrono::milliseconds timeout);
  std::unique_ptr<Impl> impl_;
};

/// Whether this build can make a group on DEVICE's kind.
bool has_group_for(c10::Device device);

}  // namespace astraea::parallel
