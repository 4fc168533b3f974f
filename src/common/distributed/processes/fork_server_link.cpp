#include "common/distributed/processes/fork_server_link.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace tierflow {

ForkServerLink::~ForkServerLink() { abandon(); }

void ForkServerLink::abandon() {
  if (!owns_) return;
  owns_ = false;
  syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
  siginfo_t info;
  syscall(SYS_waitid, P_PIDFD, pidfd_, &info, WEXITED, nullptr);
  close(pidfd_);
  close(sock_fd_);
  for (auto& c : children_)
    if (c.output_fd >= 0) close(c.output_fd);
}

}  // namespace tierflow
