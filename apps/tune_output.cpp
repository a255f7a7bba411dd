// What `astraea-bench tune` prints of a tuning run: the study's counts, the best schedule and the
// Pareto front, the held-out check against the uniform schedule, and the measured speed.
#include "apps/tune_output.h"

#include <cstdio>

namespace astraea::app {

void print_outcome(const tuner::TuneRequest& r, const tuner::TuneOutcome& out) {
  const auto& best = out.search.best;
  std::printf(
      "study %s: %zu genomes, %lld evaluated now, %lld answered by the store; %.1f device-seconds of "
      "evaluation in the study so far\n",
      r.study.c_str(), out.search.evaluated.size(), static_cast<long long>(out.counts.evaluated_here),
      static_cast<long long>(out.counts.answered_by_store), out.evaluation_seconds);
  std::printf("best: fitness %.4f (%s), predicted %.1f ms of %.1f dense (%.2fx)\n", best.fitness,
              r.fitness_name.c_str(), best.cost_ms, out.dense_ms, out.dense_ms / best.cost_ms);
  std::string budgets;
  for (double b : best.genome) budgets += (budgets.empty() ? "" : " ") + std::to_string(b).substr(0, 3);
  std::printf("budgets: %s\nPareto front (%zu):\n", budgets.c_str(), out.search.front.size());
  for (const auto& e : out.search.front)
    std::printf("  %8.1f ms  %.2fx  fitness %.4f\n", e.cost_ms, out.dense_ms / e.cost_ms, e.fitness);
  if (const auto& h = out.held_out) {
    std::printf("validation on %zu held-out prompts x %zu seeds: fitness %.4f (calibration %.4f)\n",
                r.held_out.size(), r.videos.seeds.size(), tuner::fitness_of(h->tuned, r.metrics),
                best.fitness);
    const double u = out.uniform.back();
    if (h->vbench) {
      auto share = [&](double v) { return 100.0 * (v / h->dense_vbench - 1.0); };
      std::printf(
          "  tuned:                   PSNR %6.2f dB, VBench-proxy %.4f (%+.2f%% of dense %.4f), predicted "
          "%.1f ms\n",
          h->tuned.of("psnr"), h->tuned.of("vbench-proxy"), share(h->tuned.of("vbench-proxy")),
          h->dense_vbench, best.cost_ms);
      std::printf("  uniform %.3f, same cost: PSNR %6.2f dB, VBench-proxy %.4f (%+.2f%%); tuned %+.2f dB\n",
                  u, h->uniform.of("psnr"), h->uniform.of("vbench-proxy"),
                  share(h->uniform.of("vbench-proxy")), h->tuned.of("psnr") - h->uniform.of("psnr"));
    } else {
      std::printf(
          "  tuned:                   PSNR %6.2f dB, predicted %.1f ms (no VBench-proxy: no optical flow or "
          "too "
          "small)\n  uniform %.3f, same cost: PSNR %6.2f dB; tuned %+.2f dB\n",
          h->tuned.of("psnr"), best.cost_ms, u, h->uniform.of("psnr"),
          h->tuned.of("psnr") - h->uniform.of("psnr"));
    }
    if (!r.save_videos.empty())
      std::printf("wrote the held-out videos and %s/index.json\n", r.save_videos.c_str());
  }
  if (const auto& s = out.speed) {
    const double d = s->dense.median_ms, t = s->tuned.median_ms, u = s->uniform.median_ms;
    std::printf(
        "  measured: dense %.1f ms, tuned %.1f ms (%.2fx; predicted %.2fx), uniform %.1f ms (%.2fx); noise "
        "%.1f%%, %.1f%%, %.1f%%\n",
        d, t, d / t, out.dense_ms / best.cost_ms, u, d / u, 100 * s->dense.noise, 100 * s->tuned.noise,
        100 * s->uniform.noise);
    if (r.measure_repeats > 1 && !(s->dense.converged && s->tuned.converged && s->uniform.converged))
      std::fprintf(
          stderr,
          "warning: the measured runs stayed noisier than %.0f%%: the measured speedup is uncertain\n",
          100 * s->noise_target);
  }
}

}  // namespace astraea::app
