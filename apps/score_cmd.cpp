// astraea-bench score: fidelity to a reference and VBench-proxy scores of any video, ours or the
// user's; printed, and stored as a run when --db is given.
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/provenance.h"
#include "apps/scoring.h"
#include "db/store.h"

namespace astraea::app {
namespace {

struct ScoreFlags {
  std::string video, reference, prompt, metrics, format = "table", db;
  double fps = 16.0;
};

void run(const ScoreFlags& f) {
  const std::string metric_text = f.metrics.empty() ? (f.reference.empty() ? "vbench-proxy" : "both") : f.metrics;
  const auto metrics = quality::parse_metrics(metric_text);
  if (quality::needs_reference(metrics) && f.reference.empty()) {
    throw UsageError("--metrics " + metric_text + " needs --reference FILE");
  }
  double fps = f.fps;
  const auto video = load_video("--video", f.video, &fps);
  at::Tensor reference;
  if (!f.reference.empty()) {
    reference = load_video("--reference", f.reference, nullptr);
    if (reference.sizes() != video.sizes()) {
      throw UsageError("--reference " + f.reference + " is " + c10::str(reference.sizes()) + ", --video " + f.video +
                       " is " + c10::str(video.sizes()));
    }
  }
  // An MP4 is scored by VBench's metrics as cv2.VideoCapture decodes it (VBench reads frames so),
  // by the others as decoded faithfully.
  at::Tensor vbench_video;
  if (ends_with(f.video, ".mp4") && quality::reads_as_vbench(metrics))
    vbench_video = load_video("--video", f.video, nullptr, VideoDecode::kOpenCv);
  const auto scores = score_video(video, reference.defined() ? &reference : nullptr, f.prompt, fps, metrics,
                                  vbench_video.defined() ? &vbench_video : nullptr);
  if (!f.db.empty()) {
    auto store = db::Store::open(f.db);
    db::RunRecord run;
    run.kind = "score";
    run.config_json = nlohmann::json{{"video", f.video}, {"reference", f.reference}, {"prompt", f.prompt},
                                     {"metrics", metric_text}, {"fps", fps}, {"command", command_line()}}
                          .dump();
    run.git_revision = git_revision();
    run.measurements = score_records(scores);
    store.add_run(run);
  }
  print_scores(std::cout, scores, f.format == "json");
}

}  // namespace

void register_score(CLI::App& app) {
  auto f = std::make_shared<ScoreFlags>();
  auto* sub = app.add_subcommand("score", "Score a video: fidelity to a reference, VBench-proxy dimensions, prompt adherence");
  sub->add_option("--video", f->video, "the video: .safetensors (key 'video', float32 [F, H, W, 3] in [0, 1]) or .mp4")
      ->required();
  sub->add_option("--reference", f->reference, "the dense reference, for PSNR, SSIM and MSE");
  sub->add_option("--prompt", f->prompt, "the shapes-world prompt it was made from: adds colour, shape, motion and "
                                         "background adherence");
  sub->add_option("--metrics", f->metrics,
                  "metric names, comma-separated: psnr, vbench-proxy, or both (default: both with "
                  "--reference, else vbench-proxy)");
  sub->add_option("--fps", f->fps, "frame rate of a safetensors video (an MP4 says its own)")->default_val(16.0);
  sub->add_option("--format", f->format, "table or json")->default_val("table")->check(CLI::IsMember({"table", "json"}));
  sub->add_option("--db", f->db, "also store the scores as a run in this store");
  on_run(sub, [f] { run(*f); });
}

}  // namespace astraea::app
