// astraea-bench launch: runs NPROC ranks of a command on this machine with torchrun's environment
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT on a free port), for
// machines without Python. Each rank's lines are prefixed with its rank; Ctrl-C reaches every rank;
// when one rank fails, the others are stopped and launch exits with that rank's status.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "parallel/launch_env.h"

extern char** environ;

namespace astraea::app {
namespace {

struct LaunchFlags {
  int nproc = 1;
  std::string program;  // "" : this astraea-bench
  double grace_s = 10;
  std::vector<std::string> command;
};

volatile std::sig_atomic_t g_signal = 0;
void remember(int sig) { g_signal = sig; }

struct Rank {
  pid_t pid = -1;
  int out = -1, err = -1;  // read ends of its stdout and stderr
  std::string out_buf, err_buf;
  int status = -1;  // exit status once it ended (128 + signal when killed)
};

// Writes the complete lines of BUF (and with FLUSH the rest) to FILE, each prefixed with the rank.
void emit(std::string& buf, int rank, std::FILE* file, bool flush) {
  size_t start = 0;
  for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1)
    std::fprintf(file, "[rank %d] %.*s\n", rank, static_cast<int>(nl - start), buf.data() + start);
  buf.erase(0, start);
  if (flush && !buf.empty()) {
    std::fprintf(file, "[rank %d] %s\n", rank, buf.c_str());
    buf.clear();
  }
  std::fflush(file);
}

pid_t start(int rank, const LaunchFlags& f, int port, const std::string& self, int out[2], int err[2]) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // The child: its own process group (the terminal's Ctrl-C reaches the launcher, which forwards
  // it once), its pipes, torchrun's variables, then the command.
  setpgid(0, 0);
  dup2(out[1], STDOUT_FILENO);
  dup2(err[1], STDERR_FILENO);
  close(out[0]);
  close(err[0]);
  for (const auto& [k, v] : parallel::launch_variables(rank, f.nproc, "127.0.0.1", port))
    setenv(k.c_str(), v.c_str(), 1);
  std::vector<std::string> args{f.program.empty() ? self : f.program};
  args.insert(args.end(), f.command.begin(), f.command.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  std::fprintf(stderr, "cannot run %s: %s\n", argv[0], std::strerror(errno));
  _exit(127);
}

int run(const LaunchFlags& f) {
  if (f.nproc < 1 || f.nproc > 64)
    throw UsageError("--nproc " + std::to_string(f.nproc) + " is not in [1, 64]");
  if (f.command.empty() && f.program.empty())
    throw UsageError("launch needs a command after --, e.g. launch --nproc 2 -- generate ...");
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) throw std::runtime_error("launch: cannot find its own executable");
  self[n] = '\0';
  const int port = parallel::free_local_port();
  struct sigaction sa {};
  sa.sa_handler = remember;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::vector<Rank> ranks(static_cast<size_t>(f.nproc));
  for (int r = 0; r < f.nproc; ++r) {
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) throw std::runtime_error("launch: no pipe");
    ranks[r].pid = start(r, f, port, self, out, err);
    close(out[1]);
    close(err[1]);
    ranks[r].out = out[0];
    ranks[r].err = err[0];
  }
  int first_failure = -1;  // the rank whose status launch exits with
  auto stop_at = std::chrono::steady_clock::time_point::max();
  bool killed = false;
  // A rank's whole process group: what it started (a shell's children, say) goes with it.
  auto signal_all = [&](int sig) {
    for (auto& k : ranks)
      if (k.status < 0 || k.out >= 0 || k.err >= 0) kill(-k.pid, sig);
  };
  for (;;) {
    if (g_signal) {  // Ctrl-C or a TERM: forward it once, then wait for the ranks
      signal_all(g_signal);
      if (stop_at == std::chrono::steady_clock::time_point::max())
        stop_at = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(f.grace_s));
      g_signal = 0;
    }
    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, bool>> who;  // (rank, is stderr)
    for (size_t r = 0; r < ranks.size(); ++r) {
      if (ranks[r].out >= 0) fds.push_back({ranks[r].out, POLLIN, 0}), who.emplace_back(r, false);
      if (ranks[r].err >= 0) fds.push_back({ranks[r].err, POLLIN, 0}), who.emplace_back(r, true);
    }
    if (!fds.empty()) poll(fds.data(), fds.size(), 100);
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto& k = ranks[who[i].first];
      char buf[4096];
      const ssize_t got = read(fds[i].fd, buf, sizeof buf);
      auto& text = who[i].second ? k.err_buf : k.out_buf;
      if (got > 0) {
        text.append(buf, static_cast<size_t>(got));
        emit(text, static_cast<int>(who[i].first), who[i].second ? stderr : stdout, false);
      } else if (got == 0 || errno != EINTR) {
        emit(text, static_cast<int>(who[i].first), who[i].second ? stderr : stdout, true);
        close(fds[i].fd);
        (who[i].second ? k.err : k.out) = -1;
      }
    }
    bool running = false;
    for (size_t r = 0; r < ranks.size(); ++r) {
      auto& k = ranks[r];
      if (k.status >= 0) continue;
      int status = 0;
      if (waitpid(k.pid, &status, WNOHANG) != k.pid) {
        running = true;
        continue;
      }
      k.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (k.status != 0 && first_failure < 0) {
        first_failure = static_cast<int>(r);
        std::fprintf(stderr, "launch: rank %zu exited with status %d; stopping the other ranks\n", r,
                     k.status);
        signal_all(SIGTERM);
        stop_at = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(f.grace_s));
      }
    }
    bool open = false;
    for (const auto& k : ranks) open = open || k.out >= 0 || k.err >= 0;
    if (!running && !open) break;
    if (running && !killed && std::chrono::steady_clock::now() > stop_at) {
      std::fprintf(stderr, "launch: ranks still running %.0f s after being stopped; killing them\n",
                   f.grace_s);
      signal_all(SIGKILL);
      killed = true;
    }
  }
  return first_failure < 0 ? 0 : ranks[static_cast<size_t>(first_failure)].status;
}

}  // namespace

void register_launch(CLI::App& app) {
  auto f = std::make_shared<LaunchFlags>();
  auto* sub = app.add_subcommand(
      "launch", "Run NPROC ranks of a command with torchrun's environment: launch --nproc 4 -- generate ...");
  sub->add_option("--nproc", f->nproc, "ranks to start on this machine")->default_val(1);
  sub->add_option("--program", f->program, "run this program instead of astraea-bench (a test rank, a tool)");
  sub->add_option("--grace", f->grace_s, "seconds a stopped rank gets before it is killed")
      ->default_val(10.0);
  sub->add_option("command", f->command,
                  "the astraea-bench command line (or --program's arguments), after --");
  on_run(sub, [f] {
    const int code = run(*f);
    if (code != 0) throw ExitCode{code};
  });
}

}  // namespace astraea::app
