// Reaper: the parent's link to the fork server, which forks, reaps and
// replaces every child (see python/tierflow/_forkserver.py for the server).
//
// One thread polls the server's socket, the server's pidfd and a stop
// eventfd. Every birth (SPAWNED, with the child's output pipe passed as
// SCM_RIGHTS) and death (DIED, with the waitid status) arrives as one
// SOCK_SEQPACKET message the moment it happens — no timeouts, no SIGCHLD
// handler in the parent. Deaths are reported as
// "chip 2 (pid 1234) died: killed by signal SIGKILL". If the server itself
// dies, its children die with it (PR_SET_PDEATHSIG) and are reported dead.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tierflow {

// Wire format shared with the fork server (struct "=IIiii").
struct ForkServerMsg {
  uint32_t type;
  uint32_t mailbox;
  int32_t pid;
  int32_t code;
  int32_t status;
};
// parent -> server: kMsgSpawn, kMsgQuit, kMsgKill; server -> parent: kMsgSpawned, kMsgDied.
enum ForkServerRequest : uint32_t { kMsgSpawn = 1, kMsgQuit = 2, kMsgKill = 3 };
enum ForkServerReport : uint32_t { kMsgSpawned = 1, kMsgDied = 2 };

struct ReaperCallbacks {
  std::function<void(uint32_t mailbox, const std::string& why)> on_death;
  std::function<void(uint32_t mailbox, int pid, int output_fd)> on_spawn;
  std::function<void()> on_server_gone;  // no replacement can come any more
};

class Reaper {
 public:
  // Takes ownership of sock_fd and server_pidfd (even when it throws: then it
  // kills the server and closes both). `names[i]`/`pids[i]`: the child on
  // mailbox i ("chip 0") and its pid.
  Reaper(int sock_fd, int server_pid, int server_pidfd, std::vector<std::string> names, std::vector<int> pids,
         ReaperCallbacks callbacks);
  ~Reaper();

  // Before start().
  void set_callbacks(ReaperCallbacks callbacks) { cb_ = std::move(callbacks); }
  void start();
  void stop();  // joins the thread

  // Any thread: asks the server for a replacement child on `mailbox`.
  void request_spawn(uint32_t mailbox);
  // Waits until every child has been reported dead; false on timeout.
  bool wait_all_exited(int64_t timeout_ms);
  // Asks the server to kill and reap every child and exit, and waits for
  // it; kills the server if it does not exit in time. Idempotent.
  void quit(int64_t timeout_ms);

  // Signals every child not yet reported dead.
  void kill_all(int sig);
  // Asks the server to SIGKILL the child on `mailbox` (the server holds its
  // pidfd, so the signal can never reach a recycled pid).
  void kill_one(uint32_t mailbox);
  int pid_of(uint32_t mailbox) const;
  size_t alive() const;
  static std::string describe(int code, int status);

 private:
  void loop();
  bool read_message();
  void server_exited();
  void send(uint32_t type, uint32_t mailbox);

  int sock_fd_;
  int server_pid_;
  int server_pidfd_;
  int stop_fd_ = -1;
  std::vector<std::string> names_;
  ReaperCallbacks cb_;

  mutable std::mutex mu_;  // guards pids_, alive_, server_gone_
  std::condition_variable changed_;
  std::vector<int> pids_;
  std::vector<bool> alive_;
  bool server_gone_ = false;
  std::mutex send_mu_;
  std::thread thread_;
};

}  // namespace tierflow
