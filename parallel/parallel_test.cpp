// The launch contract and the process group: torchrun's environment parsed and refused with the
// variable named; 2 and 4 ranks as separate processes on localhost (each given the environment
// torchrun gives it) agree on every collective; a rank that never arrives makes the others fail
// with the rendezvous address named instead of hanging.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "io/field_error.h"
#include "parallel/launch_env.h"
#include "parallel/layout.h"
#include "parallel/process_group.h"

extern char** environ;

namespace astraea::parallel {
namespace {

LaunchEnv parse(const std::map<std::string, std::string>& vars) {
  return launch_env([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(LaunchEnv, WithoutWorldSizeIsOneProcess) {
  const auto e = parse({});
  EXPECT_FALSE(e.launched);
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.rank, 0);
}

TEST(LaunchEnv, ReadsTorchrunsVariables) {
  const auto e = parse({{"RANK", "3"},
                        {"WORLD_SIZE", "4"},
                        {"LOCAL_RANK", "1"},
                        {"LOCAL_WORLD_SIZE", "2"},
                        {"MASTER_ADDR", "node0"},
                        {"MASTER_PORT", "29600"}});
  EXPECT_TRUE(e.launched);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29600);
  const auto vars = launch_variables(1, 2, "127.0.0.1", 1234);
  std::map<std::string, std::string> m(vars.begin(), vars.end());
  const auto back = parse(m);
  EXPECT_EQ(back.rank, 1);
  EXPECT_EQ(back.world_size, 2);
  EXPECT_EQ(back.master_port, 1234);
}

TEST(LaunchEnv, BadValuesNameTheVariable) {
  const std::map<std::string, std::string> base{
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"RANK", "2"}, {"RANK", "x"}, {"WORLD_SIZE", "0"}, {"MASTER_PORT", "70000"}, {"LOCAL_RANK", "-1"}};
  for (const auto& [name, value] : bad) {
    auto vars = base;
    vars[name] = value;
    try {
      parse(vars);
      ADD_FAILURE() << name << "=" << value << " was accepted";
    } catch (const FieldError& e) {
      EXPECT_EQ(e.fields(), std::vector<std::string>{name}) << e.what();
      EXPECT_NE(std::string(e.what()).find("'" + value + "'"), std::string::npos) << e.what();
    }
  }
  auto no_addr = base;
  no_addr.erase("MASTER_ADDR");
  EXPECT_THROW(parse(no_addr), FieldError);
  auto no_rank = base;
  no_rank.erase("RANK");
  EXPECT_THROW(parse(no_rank), FieldError);
}

TEST(Layout, AutoSplitsTheGuidanceBranchesWhenTheHeadsAllowAndNamesTheNumbersOtherwise) {
  auto l = parse_layout("auto", 8, 12, true);  // Wan 1.3B on 8: CFG 2 x Ulysses 4
  EXPECT_EQ(l.cfg, 2);
  EXPECT_EQ(l.ulysses, 4);
  EXPECT_EQ(l.text(), "cfg 2 x ulysses 4");
  EXPECT_EQ(parse_layout("auto", 4, 12, false).ulysses, 4);  // unguided: no CFG to split
  EXPECT_EQ(parse_layout("auto", 3, 3, true).text(), "ulysses 3");
  EXPECT_EQ(parse_layout("cfg=2,ulysses=3", 6, 12, true).world(), 6);
  EXPECT_EQ(parse_layout("auto", 1, 12, true).text(), "one rank");
  EXPECT_EQ(parse_layout("auto", 4, 3, true).text(), "cfg 2 x ring 2");  // the tiny preset's 3 heads
  EXPECT_EQ(parse_layout("ring=2", 2, 3, true).ring, 2);
  // Unguided on 8 ranks, 12 heads: Ulysses over the largest share that divides them, ring over the rest.
  EXPECT_EQ(parse_layout("auto", 8, 12, false).text(), "ulysses 4 x ring 2");
  EXPECT_EQ(parse_layout("auto", 6, 3, false).text(), "ulysses 3 x ring 2");
  EXPECT_EQ(parse_layout("ulysses=2,ring=2", 4, 12, true).world(), 4);
  const std::vector<std::tuple<std::string, int, int, bool, std::string>> bad = {
      {"cfg=2,ulysses=2", 3, 12, true, "uses 4 ranks, but 3 were launched"},
      {"cfg=2", 2, 12, false, "cfg is 1 or 2, and 1 without guidance"},
      {"ulysses=8", 8, 12, true, "Ulysses over 8 ranks needs heads divisible by it; the model has 12"},
      {"pipeline=2", 2, 12, true, "item 'pipeline=2' is not cfg=C, ulysses=U or ring=R"},
      {"cfg=x", 2, 12, true, "item 'cfg=x' is not KEY=N"}};
  for (const auto& [text, world, heads, guided, needle] : bad) {
    try {
      parse_layout(text, world, heads, guided);
      ADD_FAILURE() << text << " was accepted";
    } catch (const FieldError& e) {
      EXPECT_EQ(e.fields(), std::vector<std::string>{"parallel"});
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

// Starts RANKS of WORLD rank_check processes with torchrun's environment; returns each exit status.
// With ERR_FILE, their stderr goes there.
std::vector<int> run_ranks(int world, const std::vector<int>& ranks, const std::vector<std::string>& args,
                           const std::string& err_file = "") {
  const int port = free_local_port();
  std::vector<pid_t> pids;
  for (int rank : ranks) {
    std::vector<std::string> env_text;
    for (char** e = environ; *e; ++e) env_text.emplace_back(*e);
    for (const auto& [k, v] : launch_variables(rank, world, "127.0.0.1", port))
      env_text.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_text) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_text{ASTRAEA_RANK_CHECK_BIN};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_text) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (!err_file.empty())
      posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_file.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  return codes;
}

TEST(ProcessGroup, TwoAndFourRanksAgreeOnEveryCollective) {
  if (!has_group_for(c10::Device(c10::kCPU))) GTEST_SKIP() << "this build has no c10d Gloo group";
  EXPECT_EQ(run_ranks(2, {0, 1}, {}), (std::vector<int>{0, 0}));
  EXPECT_EQ(run_ranks(4, {0, 1, 2, 3}, {}), (std::vector<int>{0, 0, 0, 0}));
}

TEST(ProcessGroup, ARankThatNeverArrivesFailsTheOthersInsteadOfHanging) {
  if (!has_group_for(c10::Device(c10::kCPU))) GTEST_SKIP() << "this build has no c10d Gloo group";
  const auto t0 = std::chrono::steady_clock::now();
  const auto err = (std::filesystem::temp_directory_path() / "astraea_missing_rank.txt").string();
  EXPECT_EQ(run_ranks(2, {0}, {"--timeout-ms", "3000"}, err), (std::vector<int>{1}));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  std::ifstream in(err);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("error: rank 0 of 2: the ranks did not all meet at 127.0.0.1:", 0), 0u) << line;
  EXPECT_NE(line.find("within 3 s"), std::string::npos) << line;
}

}  // namespace
}  // namespace astraea::parallel
