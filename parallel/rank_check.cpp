// One rank of the process-group tests (parallel_test, cli_test's launch tests): joins the group
// from torchrun's environment and checks every collective against what it must give; exit 0 when
// all agree. `--die` makes rank 1 exit 3 before joining (a rank that dies); `--timeout-ms N` bounds
// the rendezvous; `--device cuda` runs them on rank LOCAL_RANK's GPU (NCCL).
#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/denoiser.h"
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
    // The Wan forward on a batch of two (a guidance pair), its tokens split over the ranks, against
    // the one-process forward: every rank computes both from the same seeds.
    if (!cuda) {
      astraea::ModelConfig c = astraea::model_preset("tiny");
      c.dim = 32;
      c.ffn_dim = 48;
      c.heads = 4;
      c.layers = 2;
      c.text_dim = 8;
      c.text_len = 5;
      c.freq_dim = 16;
      const auto model =
          astraea::make_denoiser(c, astraea::random_weights(c, 7, at::kCPU, at::kFloat), at::kFloat);
      at::manual_seed(3);
      const auto x = at::randn({2, c.in_channels, 2, 8, 8});  // 2 x 4 x 4 = 32 tokens
      const auto t = at::tensor({700.0, 300.0}, at::kDouble);
      const auto ctx = model->embed_context(at::randn({2, 5, c.text_dim}));
      const auto full = model->forward_batch(x, t, ctx);
      const auto split = model->forward_sequence_parallel(x, t, ctx, *group);
      const double rel = ((split - full).abs().max() / full.abs().max()).item<double>();
      expect(split.sizes() == full.sizes() && rel < 1e-5, "sequence-parallel forward", r);
      std::printf("rank %d: sequence-parallel forward, max difference %.2g of the largest output\n", r, rel);
      // Ring attention, which takes any head count: a 3-head config against its one-process forward.
      {
        astraea::ModelConfig c3 = c;
        c3.heads = 3;
        c3.dim = 48;
        const auto m3 =
            astraea::make_denoiser(c3, astraea::random_weights(c3, 8, at::kCPU, at::kFloat), at::kFloat);
        const auto ctx3 = m3->embed_context(at::randn({2, 5, c3.text_dim}));
        const auto one = m3->forward_batch(x, t, ctx3);
        const auto ring =
            m3->forward_sequence_parallel(x, t, ctx3, *group, astraea::Denoiser::SequenceAttention::kRing);
        const double rel3 = ((ring - one).abs().max() / one.abs().max()).item<double>();
        expect(ring.sizes() == one.sizes() && rel3 < 1e-5, "ring forward", r);
        std::printf("rank %d: ring forward (3 heads), max difference %.2g of the largest output\n", r, rel3);
      }
      if (p > 1 && 3 % p != 0) {  // the tiny preset's 3 heads do not split over P
        bool refused = false;
        try {
          c.heads = 3;
          c.dim = 48;
          astraea::make_denoiser(c, astraea::random_weights(c, 7, at::kCPU, at::kFloat), at::kFloat)
              ->forward_sequence_parallel(x, t, at::zeros({2, c.text_len, c.dim}), *group);
        } catch (const std::invalid_argument& e) {
          refused = std::string(e.what()).find("needs heads divisible by") != std::string::npos;
        }
        expect(refused, "the refusal of 3 heads", r);
      }
    }
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
