#include "parallel/process_group.h"

#include <ATen/ATen.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if ASTRAEA_HAS_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if ASTRAEA_HAS_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace astraea::parallel {

// The group's collectives, over one c10d backend type (Gloo's and NCCL's have the same calls;
// LibTorch 1.13 derives them from ProcessGroup, 2.x from Backend, so neither base is named here).
struct ProcessGroup::Impl {
  virtual ~Impl() = default;
  int rank = 0, size = 1;
  std::string name;
  // What a subgroup is made from: the rendezvous, the device, the Gloo host, the timeout.
  c10::intrusive_ptr<c10d::Store> store;
  c10::Device device{c10::kCPU};
  std::string host;
  std::chrono::milliseconds timeout{60000};
  virtual void wait_all_to_all(at::Tensor& out, at::Tensor& in) = 0;
  virtual void wait_all_gather(std::vector<at::Tensor>& outs, at::Tensor& in) = 0;
  virtual void wait_all_reduce(at::Tensor& t) = 0;
  virtual void wait_barrier() = 0;
  virtual void wait_send_recv(at::Tensor& out, int to, at::Tensor& in, int from) = 0;
};

namespace {

// Ends a group before exit: NCCL's releases its communicators (LibTorch 2.x warns otherwise).
template <class Group>
void close_group(Group&) {}
#if ASTRAEA_HAS_C10D_NCCL
template <>
void close_group(c10d::ProcessGroupNCCL& g) {
  g.shutdown();
}
#endif

template <class Group>
struct Backend final : ProcessGroup::Impl {
  c10::intrusive_ptr<Group> group;

  ~Backend() override {
    try {
      if (group) close_group(*group);
    } catch (const std::exception&) {  // a failed shutdown at exit changes nothing for the caller
    }
  }

  void wait_all_to_all(at::Tensor& out, at::Tensor& in) override {
    std::vector<int64_t> equal;  // empty: equal splits along dim 0
    group->alltoall_base(out, in, equal, equal)->wait();
  }
  void wait_all_gather(std::vector<at::Tensor>& outs, at::Tensor& in) override {
    std::vector<std::vector<at::Tensor>> out_lists{outs};
    std::vector<at::Tensor> ins{in};
    group->allgather(out_lists, ins)->wait();
    outs = out_lists[0];
  }
  void wait_all_reduce(at::Tensor& t) override {
    std::vector<at::Tensor> ts{t};
    group->allreduce(ts)->wait();
  }
  void wait_barrier() override { group->barrier()->wait(); }
  void wait_send_recv(at::Tensor& out, int to, at::Tensor& in, int from) override {
    std::vector<at::Tensor> outs{out}, ins{in};
    auto sent = group->send(outs, to, 0);  // both posted before either is waited for
    auto got = group->recv(ins, from, 0);
    sent->wait();
    got->wait();
  }
};

c10::intrusive_ptr<c10d::Store> rendezvous(const LaunchEnv& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(env.master_port);
  o.isServer = env.rank == 0;
  o.numWorkers = static_cast<std::size_t>(env.world_size);
  o.waitWorkers = true;
  o.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
}

// What a rank says when the others did not all arrive.
std::runtime_error no_rendezvous(const LaunchEnv& env, std::chrono::milliseconds timeout,
                                 const std::string& why) {
  return std::runtime_error(
      "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
      ": the ranks did not all meet at " + env.master_addr + ":" + std::to_string(env.master_port) +
      " within " + std::to_string(timeout.count() / 1000) + " s (" + why.substr(0, why.find('\n')) + ")");
}

// Runs one collective, turning the transport's failure (a rank that died closes its connections;
// one that hangs runs the group past its timeout) into one line that says what happened.
template <class F>
void collective(const ProcessGroup::Impl& impl, const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    const std::string why = e.what();
    throw std::runtime_error(std::string(what) + " over " + std::to_string(impl.size) + " ranks (rank " +
                             std::to_string(impl.rank) + " here) failed: another rank stopped, hung for " +
                             std::to_string(impl.timeout.count() / 1000) + " s or lost its connection (" +
                             impl.name + ": " + why.substr(0, why.find('\n')) + ")");
  }
}

}  // namespace

bool has_group_for(c10::Device device) {
  return device.is_cuda() ? ASTRAEA_HAS_C10D_NCCL : ASTRAEA_HAS_C10D_GLOO;
}

std::unique_ptr<ProcessGroup> ProcessGroup::join(const LaunchEnv& env, c10::Device device,
                                                 std::chrono::milliseconds timeout) {
  if (!has_group_for(device)) {
    throw std::runtime_error(std::string("this build has no c10d ") + (device.is_cuda() ? "NCCL" : "Gloo") +
                             " process group for " + device.str() + " (LibTorch or its headers lack it)");
  }
  try {
    return join_group(env, device, timeout);
  } catch (const std::exception& e) {
    throw no_rendezvous(env, timeout, e.what());
  }
}

std::unique_ptr<ProcessGroup> ProcessGroup::join_group(const LaunchEnv& env, c10::Device device,
                                                       std::chrono::milliseconds timeout) {
  return make(rendezvous(env, timeout), env.rank, env.world_size, device, env.master_addr, timeout);
}

std::unique_ptr<ProcessGroup> ProcessGroup::make(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                 c10::Device device, const std::string& host,
                                                 std::chrono::milliseconds timeout) {
  std::unique_ptr<Impl> impl;
  if (!device.is_cuda()) {
#if ASTRAEA_HAS_C10D_GLOO
    auto b = std::make_unique<Backend<c10d::ProcessGroupGloo>>();
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    b->group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
    b->name = "gloo";
    impl = std::move(b);
#endif
  } else {
#if ASTRAEA_HAS_C10D_NCCL
    auto b = std::make_unique<Backend<c10d::ProcessGroupNCCL>>();
    auto opts = c10::make_intrusive<c10d::ProcessGroupNCCL::Options>();
    opts->timeout = timeout;
    b->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
    b->name = "nccl";
    impl = std::move(b);
#endif
  }
  impl->rank = rank;
  impl->size = size;
  impl->store = std::move(store);
  impl->device = device;
  impl->host = host;
  impl->timeout = timeout;
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

std::unique_ptr<ProcessGroup> ProcessGroup::subgroup(const std::vector<int>& members) const {
  const auto me = std::find(members.begin(), members.end(), impl_->rank);
  if (me == members.end())
    throw std::logic_error("rank " + std::to_string(impl_->rank) + " is not in the subgroup");
  std::string name = "group";
  for (int m : members) name += "." + std::to_string(m);
  auto store = c10::make_intrusive<c10d::PrefixStore>(name, impl_->store);
  return make(store, static_cast<int>(me - members.begin()), static_cast<int>(members.size()), impl_->device,
              impl_->host, impl_->timeout);
}

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

int ProcessGroup::rank() const { return impl_->rank; }
int ProcessGroup::size() const { return impl_->size; }
std::string ProcessGroup::backend() const { return impl_->name; }

at::Tensor ProcessGroup::all_to_all(const at::Tensor& t, int64_t split_dim, int64_t cat_dim) const {
  const int64_t p = impl_->size;
  if (p == 1) return t;  // one rank: nothing to exchange
  split_dim = at::maybe_wrap_dim(split_dim, t.dim());
  TORCH_CHECK(t.size(split_dim) % p == 0, "all_to_all: dimension ", split_dim, " of ", t.sizes(),
              " does not split into ", p, " equal parts");
  // [P, part...]: part r is row r, sent to rank r; row r of the output came from rank r.
  auto in = at::stack(t.chunk(p, split_dim), 0).contiguous();
  auto out = at::empty_like(in);
  collective(*impl_, "all_to_all", [&] { impl_->wait_all_to_all(out, in); });
  return at::cat(out.unbind(0), cat_dim);
}

at::Tensor ProcessGroup::ring_pass(const at::Tensor& t) const {
  const int p = impl_->size, r = impl_->rank;
  if (p == 1) return t;
  auto out = t.contiguous();
  auto in = at::empty_like(out);
  collective(*impl_, "ring_pass", [&] { impl_->wait_send_recv(out, (r + 1) % p, in, (r + p - 1) % p); });
  return in;
}

at::Tensor ProcessGroup::all_gather(const at::Tensor& t, int64_t dim) const {
  if (impl_->size == 1) return t;
  auto in = t.contiguous();
  std::vector<at::Tensor> outs;
  for (int r = 0; r < impl_->size; ++r) outs.push_back(at::empty_like(in));
  collective(*impl_, "all_gather", [&] { impl_->wait_all_gather(outs, in); });
  return at::cat(outs, dim);
}

void ProcessGroup::all_reduce_sum(at::Tensor& t) const {
  TORCH_CHECK(t.is_contiguous(), "all_reduce_sum needs a contiguous tensor");
  collective(*impl_, "all_reduce", [&] { impl_->wait_all_reduce(t); });
}

void ProcessGroup::barrier() const {
  collective(*impl_, "barrier", [&] { impl_->wait_barrier(); });
}

}  // namespace astraea::parallel
