// ForkServerLink: the parent's hold on a fork server it just forked and the
// children that server started — pids, the server's pidfd and socket, each
// child's output pipe. It exists so that these resources always have exactly
// one owner: the Python side wraps them in a link the moment the fork server
// reports its children, and the Engine takes them over as its first act. If
// nobody takes them (init() failed halfway), the link's destructor kills the
// server — its children follow it (PR_SET_PDEATHSIG) — and closes every
// descriptor, so a failed start leaks no process and no fd.
#pragma once
#include <cstdint>
#include <vector>

#include "common/distributed/graph/task_id.h"

namespace tierflow {

struct ChildProcess {
  TaskKind kind;   // Sub or Chip
  uint32_t index;  // within its kind
  int pid;
  int output_fd;   // read end of its output pipe, or -1
};

class ForkServerLink {
 public:
  ForkServerLink(int pid, int pidfd, int sock_fd, std::vector<ChildProcess> children)
      : pid_(pid), pidfd_(pidfd), sock_fd_(sock_fd), children_(std::move(children)) {}
  ~ForkServerLink();
  ForkServerLink(const ForkServerLink&) = delete;
  ForkServerLink& operator=(const ForkServerLink&) = delete;

  bool owns() const { return owns_; }
  int pid() const { return pid_; }
  int pidfd() const { return pidfd_; }
  int sock_fd() const { return sock_fd_; }
  const std::vector<ChildProcess>& children() const { return children_; }
  // The caller owns every resource from now on.
  void release() { owns_ = false; }
  // Kills the server, reaps it and closes every descriptor (idempotent).
  void abandon();

 private:
  int pid_, pidfd_, sock_fd_;
  std::vector<ChildProcess> children_;
  bool owns_ = true;
};

}  // namespace tierflow
