// One rank of the process-group tests (parallel_test, cli_test's launch tests): joins the group
// from torchrun's environment and checks every collective against what it must give; exit 0 when
// all agree. `--die` makes rank 1 exit 3 before joining (a rank that dies); `--timeout-ms N` bounds
// the rendezvous; `--device cuda` runs them on rank LOCAL_RANK's GPU (NCCL).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/denoiser.h"
#include "model/token_cache.h"
#include "model/weights.h"
#include "parallel/process_group.h"

namespace {

int failures = 0;

void expect(bool ok, const char* what, int rank) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: %s is wrong\n", rank, what);
    ++failures;
  }
}

// A small Wan config with HEADS heads.
astraea::ModelConfig small_config(int64_t heads) {
  astraea::ModelConfig c = astraea::model_preset("tiny");
  c.heads = heads;
  c.dim = 16 * heads;
  c.ffn_dim = 48;
  c.layers = 2;
  c.text_dim = 8;
  c.text_len = 5;
  c.freq_dim = 16;
  return c;
}

double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  const auto x = a.cpu().to(at::kFloat), y = b.cpu().to(at::kFloat);
  return ((x - y).abs().max() / y.abs().max()).item<double>();
}

// How far a split forward may be from the one-process one: fp32 rounding on the CPU; on the GPU,
// bf16 products summed in another order (the GPU tests' tolerance).
double tolerance(const at::Device& device) { return device.is_cuda() ? 3e-2 : 1e-5; }

// The token-wise forward over five steps (dense, sparse, skipped, sparse, sparse) on inputs that
// move, with the tokens split as SPLIT says, against one process selecting in as many segments;
// also the work and the cache memory per rank, which fall by the ranks.
void check_tokenwise(const astraea::Denoiser& m, const astraea::SequenceSplit& split,
                     const astraea::SelectionParams& sel, const std::string& what, int r) {
  at::manual_seed(11);
  const auto& c = m.config();
  const auto device = m.device();
  const auto x = at::randn({c.in_channels, 2, 8, 8}).to(device),
             drift = at::randn({c.in_channels, 2, 8, 8}).to(device);
  const auto ctx = m.embed_context(at::randn({c.text_len, c.text_dim}).to(device));
  auto one_sel = sel;
  one_sel.segments = split.size();
  astraea::TokenEngineState one, mine;
  double worst = 0;
  const double budgets[] = {1.0, 0.5, 0.0, 0.3, 0.5};
  for (int i = 0; i < 5; ++i) {
    const auto xi = x + 0.1 * i * drift;
    const double t = 900 - 150 * i;
    const auto want = m.forward_tokenwise(xi, t, ctx, budgets[i], one_sel, one);
    const auto got = m.forward_tokenwise_sequence_parallel(xi, t, ctx, budgets[i], sel, mine, split);
    worst = std::max(worst, relative_difference(got, want));
  }
  const int p = split.size();
  expect(worst < tolerance(device), (what + " token-wise forward").c_str(), r);
  expect(mine.computed_tokens * p == one.computed_tokens && mine.total_tokens * p == one.total_tokens,
         (what + " token-wise work per rank").c_str(), r);
  expect(mine.bytes() * p == one.bytes(), (what + " token-wise cache memory per rank").c_str(), r);
  std::printf(
      "rank %d: %s token-wise forward, max difference %.2g of the largest output; caches %lld of %lld "
      "bytes\n",
      r, what.c_str(), worst, static_cast<long long>(mine.bytes()), static_cast<long long>(one.bytes()));
}

void check_model_forwards(const astraea::parallel::ProcessGroup& group, const at::Device& device) {
  using astraea::SequenceSplit;
  const int r = group.rank(), p = group.size();
  const auto dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  const auto c4 = small_config(4), c3 = small_config(3);
  const auto m4 = astraea::make_denoiser(c4, astraea::random_weights(c4, 7, device, dtype), dtype);
  const auto m3 = astraea::make_denoiser(c3, astraea::random_weights(c3, 8, device, dtype), dtype);
  at::manual_seed(3);
  const auto x =
      at::randn({2, c4.in_channels, 2, 8, 8}).to(device);  // 2 x 4 x 4 = 32 tokens, a guidance pair
  const auto t = at::tensor({700.0, 300.0}, at::kDouble);
  const auto text = at::randn({2, 5, c4.text_dim}).to(device);
  const auto dense = [&](const astraea::Denoiser& m, const SequenceSplit& split, const std::string& what) {
    const auto ctx = m.embed_context(text);
    const double rel =
        relative_difference(m.forward_sequence_parallel(x, t, ctx, split), m.forward_batch(x, t, ctx));
    expect(rel < tolerance(device), (what + " forward").c_str(), r);
    std::printf("rank %d: %s forward, max difference %.2g of the largest output\n", r, what.c_str(), rel);
  };
  astraea::SelectionParams sel;
  sel.w_stale = 0.3;
  const SequenceSplit ulysses{&group, nullptr}, ring{nullptr, &group};
  dense(*m4, ulysses, "ulysses");
  dense(*m3, ring, "ring (3 heads)");  // ring takes any head count
  check_tokenwise(*m4, ulysses, sel, "ulysses", r);
  check_tokenwise(*m3, ring, sel, "ring", r);
  if (p == 2) {
    // Tiles and a frame floor (each rank's 16 tokens are one frame), selected with ATen operations.
    auto tiled = sel;
    tiled.tile = 2;
    tiled.min_frame_share = 0.25;
    check_tokenwise(*m4, ulysses, tiled, "ulysses, tiles and a frame floor,", r);
  }
  if (p == 4) {
    // Both (xDiT's USP): Ulysses within pairs of consecutive ranks, the ring between the pairs.
    const int ring_pos = r / 2, u_pos = r % 2;
    const auto pair = group.subgroup({ring_pos * 2, ring_pos * 2 + 1});
    const auto round = group.subgroup({u_pos, u_pos + 2});
    const SequenceSplit both{pair.get(), round.get()};
    expect(both.rank() == r, "the USP shard", r);
    dense(*m4, both, "ulysses 2 x ring 2");
    check_tokenwise(*m4, both, sel, "ulysses 2 x ring 2", r);
  }
  if (p > 1 && 3 % p != 0) {  // 3 heads do not split over P by Ulysses
    bool refused = false;
    try {
      m3->forward_sequence_parallel(x, t, m3->embed_context(text), ulysses);
    } catch (const std::invalid_argument& e) {
      refused = std::string(e.what()).find("needs heads divisible by") != std::string::npos;
    }
    expect(refused, "the refusal of 3 heads", r);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace astraea::parallel;
  bool die = false;
  long timeout_ms = 30000;
  bool cuda = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--die") die = true;
    if (a == "--device" && i + 1 < argc) cuda = std::string(argv[++i]) == "cuda";
    if (a == "--timeout-ms" && i + 1 < argc) timeout_ms = std::atol(argv[++i]);
  }
  try {
    const auto env = launch_env();
    if (die && env.rank == 1) return 3;
    const c10::Device device = cuda ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank))
                                    : c10::Device(c10::kCPU);
    const auto group = ProcessGroup::join(env, device, std::chrono::milliseconds(timeout_ms));
    const int r = group->rank(), p = group->size();
    // Sum: ranks hold 1, 2, ..., P.
    auto sum = at::full({3}, static_cast<float>(r + 1)).to(device);
    group->all_reduce_sum(sum);
    expect(at::equal(sum.cpu(), at::full({3}, static_cast<float>(p * (p + 1) / 2))), "all_reduce_sum", r);
    // Gather: rank r holds [r, r] -> [0, 0, 1, 1, ...].
    const auto gathered = group->all_gather(at::full({2}, static_cast<float>(r)).to(device), 0).cpu();
    expect(at::equal(gathered, at::arange(p, at::kFloat).repeat_interleave(2)), "all_gather", r);
    // All-to-all as Ulysses uses it: [tokens n, heads P * h, d] -> [P * n tokens, h heads, d]. Rank s
    // holds value 1000 s + 10 token + head; rank r receives heads r h .. r h + h - 1 of every rank's
    // tokens, in rank order.
    const int64_t n = 3, h = 2;
    auto tok = at::arange(n, at::kFloat).view({n, 1, 1}),
         head = at::arange(p * h, at::kFloat).view({1, p * h, 1});
    const auto mine = (1000.0 * r + 10 * tok + head).expand({n, p * h, 2}).contiguous();
    const auto got = group->all_to_all(mine.to(device), 1, 0).cpu();
    auto src = at::arange(p, at::kFloat).repeat_interleave(n).view({p * n, 1, 1});
    auto want = (1000 * src + 10 * tok.repeat({p, 1, 1}) + head.narrow(1, r * h, h)).expand({p * n, h, 2});
    expect(got.sizes() == want.sizes() && at::equal(got, want), "all_to_all", r);
    // And back: the inverse all-to-all returns each rank's own tensor.
    expect(at::equal(group->all_to_all(got.to(device), 0, 1).cpu(), mine), "all_to_all inverse", r);
    // The Wan forwards, dense and token-wise, with the tokens split over the ranks by Ulysses, by
    // ring and (on 4 ranks) by both, against the one-process forwards: every rank computes both
    // from the same seeds.
    check_model_forwards(*group, device);
    group->barrier();
    std::printf("rank %d of %d: %s collectives %s\n", r, p, group->backend().c_str(),
                failures ? "WRONG" : "ok");
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    const std::string m = e.what();
    std::fprintf(stderr, "error: %s\n", m.substr(0, m.find('\n')).c_str());
    return 1;
  }
}
