#include "apps/progress.h"

#include <unistd.h>

#include <cstdio>

namespace astraea::app {

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), tty_(isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, const std::string& extra) {
  const bool last = done >= total_;
  if (!tty_ && !last && total_ > 0 && done * 10 / total_ == last_printed_ * 10 / total_) return;
  last_printed_ = done;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : 0;
  const int width = 24;
  const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "%s%s [%s] %lld/%lld  %.1fs elapsed, ETA %.1fs%s%s%s", tty_ ? "\r" : "",
               label_.c_str(), bar.c_str(), static_cast<long long>(done), static_cast<long long>(total_),
               elapsed, eta, extra.empty() ? "" : "  ", extra.c_str(), tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void Progress::finish() {
  if (tty_) std::fputc('\n', stderr);
}

}  // namespace astraea::app
