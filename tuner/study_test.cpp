// The study loop with fake objectives and fake workers: each genome evaluated once across
// batches and processes, the store's answers reused, a gone worker's trial taken over (at claim
// time and while waiting), a live worker waited for, devices used in parallel, and a study that
// no longer matches its trials refused.
#include "tuner/study.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

namespace astraea::tuner {
namespace {

namespace fs = std::filesystem;

class FakeLiveness : public WorkerLiveness {
 public:
  bool gone(const std::string& worker) const override {
    return gone_.count(worker) > 0 || (worker == watched && watched_gone);
  }
  std::set<std::string> gone_;
  std::string watched;
  std::atomic<bool> watched_gone{false};
};

class StudyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("astraea_study_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    store_.emplace(db::Store::open((dir_ / "s.db").string()));
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  StudyWorker worker(size_t devices = 1) {
    StudyWorker w;
    w.devices = devices;
    w.name = "fake@test:1";
    w.card = "fake card";
    w.liveness = &liveness_;
    w.poll = std::chrono::milliseconds(2);
    return w;
  }
  // Fitness = the sum of the budgets; counts every call.
  Objective counting() {
    return [this](const Genome& g, size_t) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++calls_;
      double s = 0;
      for (double b : g) s += b;
      return s;
    };
  }
  const nlohmann::json config_{{"steps", 3}, {"prompts", {"a"}}};
  const LatencyModel latency_ = LatencyModel::work_proportional(10.0);
  FakeLiveness liveness_;
  std::optional<db::Store> store_;
  fs::path dir_;
  std::mutex mutex_;
  int calls_ = 0;
};

TEST_F(StudyTest, EvaluatesEachGenomeOnceAndTheStoreAnswersTheRest) {
  auto study = Study::open(*store_, "s", config_, {"steps"});
  auto evaluate = study.evaluator(counting(), latency_, worker());
  const Genome a{1, 0.5, 0.5}, b{1, 0.3, 0.2};
  EXPECT_EQ(evaluate({a, b, a}), (std::vector<double>{2.0, 1.5, 2.0}));  // the repeat waits for the first
  EXPECT_EQ(calls_, 2);
  EXPECT_EQ(evaluate({b, a}), (std::vector<double>{1.5, 2.0}));
  EXPECT_EQ(calls_, 2) << "a genome is never evaluated twice";
  EXPECT_EQ(study.counts().evaluated_here, 2);
  EXPECT_EQ(study.counts().answered_by_store, 3);
  const auto trial = store_->read_trial(study.trial_id(b));
  EXPECT_EQ(trial.state, db::TrialState::kComplete);
  EXPECT_DOUBLE_EQ(trial.predicted_cost.value(), 15.0);  // 10 ms x (1 + 0.3 + 0.2)
  EXPECT_EQ(trial.device, "fake card");
  EXPECT_GE(trial.wall_s.value(), 0.0);

  // Another process of the same study (reopened): everything answered by the store.
  auto again = Study::open(*store_, "s", config_, {"steps"});
  auto evaluate_again = again.evaluator(counting(), latency_, worker());
  EXPECT_EQ(evaluate_again({a, b}), (std::vector<double>{2.0, 1.5}));
  EXPECT_EQ(calls_, 2);
  EXPECT_EQ(again.counts().answered_by_store, 2);
}

TEST_F(StudyTest, TakesOverTheTrialOfAWorkerThatIsGoneAtClaimTime) {
  auto study = Study::open(*store_, "s", config_, {"steps"});
  const Genome g{1, 0.4, 0.1};
  ASSERT_TRUE(store_->claim_trial(study.id(), nlohmann::json(g).dump(), "dead@test:2").claimed);
  liveness_.gone_.insert("dead@test:2");
  auto evaluate = study.evaluator(counting(), latency_, worker());
  EXPECT_EQ(evaluate({g}), (std::vector<double>{1.5}));
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(study.counts().taken_over, 1);
  EXPECT_EQ(study.counts().evaluated_here, 1);
  const auto trial = store_->read_trial(study.trial_id(g));
  EXPECT_EQ(trial.state, db::TrialState::kComplete);
  EXPECT_EQ(store_->trials(study.id()).size(), 1u) << "taken over, not claimed anew";
}

TEST_F(StudyTest, WaitsForALiveWorkerAndTakesOverWhenItDies) {
  auto study = Study::open(*store_, "s", config_, {"steps"});
  const Genome g{1, 0.6, 0.6};
  ASSERT_TRUE(store_->claim_trial(study.id(), nlohmann::json(g).dump(), "busy@test:3").claimed);
  liveness_.watched = "busy@test:3";
  std::thread dies([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    liveness_.watched_gone = true;
  });
  auto evaluate = study.evaluator(counting(), latency_, worker());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(evaluate({g}), (std::vector<double>{2.2}));
  dies.join();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(60))
      << "it waited while the worker lived";
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(study.counts().taken_over, 1);
}

TEST_F(StudyTest, TakesTheResultOfALiveWorkerThatFinishes) {
  auto study = Study::open(*store_, "s", config_, {"steps"});
  const Genome g{1, 0.2, 0.2};
  const auto claim = store_->claim_trial(study.id(), nlohmann::json(g).dump(), "other@test:4");
  std::thread finishes([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    auto other = db::Store::open(store_->path());
    other.complete_trial(claim.trial.id, 7.5, 14.0, 0.1, "other card");
  });
  auto evaluate = study.evaluator(counting(), latency_, worker());
  EXPECT_EQ(evaluate({g}), (std::vector<double>{7.5})) << "the other worker's fitness, not ours";
  finishes.join();
  EXPECT_EQ(calls_, 0);
  EXPECT_EQ(study.counts().answered_by_store, 1);
}

TEST_F(StudyTest, EvaluatesOnEveryDeviceAtOnce) {
  auto study = Study::open(*store_, "s", config_, {"steps"});
  std::mutex m;
  std::set<size_t> devices;
  std::atomic<int> running{0}, most{0};
  auto evaluate = study.evaluator(
      [&](const Genome& g, size_t device) {
        const int now = ++running;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        {
          std::lock_guard<std::mutex> lock(m);
          devices.insert(device);
        }
        --running;
        return g[1];
      },
      latency_, worker(2));
  EXPECT_EQ(evaluate({{1, 0.1, 0}, {1, 0.2, 0}, {1, 0.3, 0}, {1, 0.4, 0}}),
            (std::vector<double>{0.1, 0.2, 0.3, 0.4}));
  EXPECT_EQ(devices, (std::set<size_t>{0, 1}));
  EXPECT_EQ(most.load(), 2) << "two devices: two evaluations at once, never more";
}

TEST_F(StudyTest, RefusesToResumeWithAnotherKeyItsTrialsDependOn) {
  Study::open(*store_, "s", config_, {"steps"});
  auto other = config_;
  other["steps"] = 4;
  try {
    Study::open(*store_, "s", other, {"prompts", "steps"});
    FAIL() << "resumed a study whose trials no longer hold";
  } catch (const StudyMismatch& e) {
    EXPECT_EQ(e.key, "steps");
    EXPECT_NE(std::string(e.what()).find("(3, now 4)"), std::string::npos) << e.what();
  }
  other["note"] = "keys outside the list may change";
  other["steps"] = 3;
  EXPECT_NO_THROW(Study::open(*store_, "s", other, {"prompts", "steps"}));
}

TEST(ProcessLivenessTest, JudgesOnlyProcessesOfThisHost) {
  const ProcessLiveness liveness;
  const std::string me = this_worker("cpu");
  EXPECT_FALSE(liveness.gone(me));
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);  // reaped: no such process any more
  const std::string host = me.substr(me.rfind('@') + 1, me.rfind(':') - me.rfind('@') - 1);
  EXPECT_TRUE(liveness.gone("cpu@" + host + ":" + std::to_string(child)));
  EXPECT_FALSE(liveness.gone("cpu@another-host:" + std::to_string(child)))
      << "another host's processes are not ours to judge";
  EXPECT_FALSE(liveness.gone("no host or pid"));
  EXPECT_FALSE(liveness.gone("cpu@" + host + ":12x"));
}

}  // namespace
}  // namespace astraea::tuner
