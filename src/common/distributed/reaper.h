// Reaper: notices child deaths the moment they happen. One thread polls a
// pidfd per child (readable when the child exits) plus an eventfd to stop;
// it collects the exit status with waitid(P_PIDFD) and reports
// "chip 2 (pid 1234) died: killed by signal SIGKILL". No timeouts, no
// SIGCHLD handler that could race with the interpreter's own.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tierflow {

struct WatchedChild {
  std::string name;  // "chip 2"
  int pid;
  int pidfd;  // owned by the Reaper from construction on
};

class Reaper {
 public:
  using OnDeath = std::function<void(size_t index, const std::string& why)>;
  Reaper(std::vector<WatchedChild> children, OnDeath on_death);
  ~Reaper();

  void start();
  void stop();
  // Waits until every child has exited; false on timeout (< 0: no limit).
  bool wait_all_exited(int64_t timeout_ms);
  void kill_all(int sig);
  size_t alive() const;

  static std::string describe(int code, int status);

 private:
  void loop();

  std::vector<WatchedChild> children_;
  std::vector<bool> exited_;  // guarded by mu_
  OnDeath on_death_;
  int stop_fd_ = -1;
  mutable std::mutex mu_;
  std::condition_variable exited_cv_;
  std::thread thread_;
};

}  // namespace tierflow
