// One-line progress with ETA on stderr: redrawn in place on a terminal, every ~10% otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace astraea::app {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  /// Marks `done` of `total` finished; `extra` is appended (e.g. the best result so far).
  void update(int64_t done, const std::string& extra = "");
  /// Changes the total, for work whose length is known better as it goes (rounds until quiet).
  void set_total(int64_t total) { total_ = total; }
  /// Ends the line.
  void finish();

 private:
  std::string label_;
  int64_t total_;
  int64_t last_printed_ = -1;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace astraea::app
