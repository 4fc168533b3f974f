#include "common/distributed/processes/reaper.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <stdexcept>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace tierflow {

Reaper::Reaper(int sock_fd, int server_pid, int server_pidfd, std::vector<std::string> names, std::vector<int> pids,
               ReaperCallbacks callbacks) try
    : sock_fd_(sock_fd), server_pid_(server_pid), server_pidfd_(server_pidfd), names_(std::move(names)),
      cb_(std::move(callbacks)), pids_(std::move(pids)), alive_(pids_.size(), true) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) throw std::runtime_error("eventfd failed");
} catch (...) {
  // The server's children die with it (PR_SET_PDEATHSIG).
  syscall(SYS_pidfd_send_signal, server_pidfd, SIGKILL, nullptr, 0);
  siginfo_t info;
  syscall(SYS_waitid, P_PIDFD, server_pidfd, &info, WEXITED, nullptr);
  close(sock_fd);
  close(server_pidfd);
}

Reaper::~Reaper() {
  quit(1000);
  stop();
  close(sock_fd_);
  close(server_pidfd_);
  close(stop_fd_);
}

void Reaper::start() { thread_ = std::thread([this] { loop(); }); }

void Reaper::stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  ssize_t rc = write(stop_fd_, &one, sizeof one);
  (void)rc;
  thread_.join();
}

std::string Reaper::describe(int code, int status) {
  if (code == CLD_EXITED) return "exited with exit code " + std::to_string(status);
  const char* abbrev = sigabbrev_np(status);
  std::string sig = abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(status);
  return std::string("killed by signal ") + sig + (code == CLD_DUMPED ? " (core dumped)" : "");
}

void Reaper::send(uint32_t type, uint32_t mailbox) {
  ForkServerMsg m{type, mailbox, 0, 0, 0};
  std::lock_guard<std::mutex> lock(send_mu_);
  ssize_t rc;
  do {
    rc = ::send(sock_fd_, &m, sizeof m, MSG_NOSIGNAL);
  } while (rc < 0 && errno == EINTR);
}

void Reaper::request_spawn(uint32_t mailbox) { send(kMsgSpawn, mailbox); }

// Returns false when the socket has nothing more to give.
bool Reaper::read_message() {
  ForkServerMsg m;
  char control[CMSG_SPACE(sizeof(int))];
  iovec iov{&m, sizeof m};
  msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = recvmsg(sock_fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) return errno == EINTR;
  if (n != static_cast<ssize_t>(sizeof m)) return false;
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if (m.mailbox >= pids_.size()) {
    if (fd >= 0) close(fd);
    return true;
  }
  if (m.type == kMsgSpawned) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      pids_[m.mailbox] = m.pid;
      alive_[m.mailbox] = true;
    }
    changed_.notify_all();
    cb_.on_spawn(m.mailbox, m.pid, fd);
  } else if (m.type == kMsgDied) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      alive_[m.mailbox] = false;
    }
    changed_.notify_all();
    cb_.on_death(m.mailbox, names_[m.mailbox] + " (pid " + std::to_string(m.pid) + ") died: " +
                                describe(m.code, m.status));
  }
  return true;
}

void Reaper::server_exited() {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  syscall(SYS_waitid, P_PIDFD, server_pidfd_, &info, WEXITED, nullptr);
  while (read_message()) {
  }
  std::vector<uint32_t> orphans;
  {
    std::lock_guard<std::mutex> lock(mu_);
    server_gone_ = true;
    for (uint32_t i = 0; i < alive_.size(); ++i)
      if (alive_[i]) {
        alive_[i] = false;
        orphans.push_back(i);
      }
  }
  changed_.notify_all();
  if (cb_.on_server_gone) cb_.on_server_gone();
  for (uint32_t i : orphans)
    cb_.on_death(i, names_[i] + " (pid " + std::to_string(pids_[i]) + ") died: its fork server exited (" +
                        describe(info.si_code, info.si_status) + ")");
}

void Reaper::loop() {
  bool sock_open = true;
  for (;;) {
    // Once the server closed its end, only its pidfd and stop matter.
    pollfd fds[3] = {{sock_open ? sock_fd_ : -1, POLLIN, 0}, {server_pidfd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int rc = poll(fds, 3, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) {
      // Deliver every message before looking at the server's exit.
      if (!read_message() && (fds[0].revents & (POLLHUP | POLLERR))) sock_open = false;
      continue;
    }
    if (fds[1].revents != 0) {
      server_exited();
      // Nothing more can happen; wait for stop().
      pollfd s{stop_fd_, POLLIN, 0};
      while (poll(&s, 1, -1) < 0 && errno == EINTR) {
      }
      return;
    }
    if (fds[2].revents != 0) return;
  }
}

bool Reaper::wait_all_exited(int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  auto all = [&] {
    for (bool a : alive_)
      if (a) return false;
    return true;
  };
  return changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms), all);
}

void Reaper::quit(int64_t timeout_ms) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (server_gone_) return;
  }
  send(kMsgQuit, 0);
  std::unique_lock<std::mutex> lock(mu_);
  if (thread_.joinable() &&
      changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return server_gone_; }))
    return;
  lock.unlock();
  // The server did not leave in time (or the thread is not running): kill it;
  // its children follow through PR_SET_PDEATHSIG.
  syscall(SYS_pidfd_send_signal, server_pidfd_, SIGKILL, nullptr, 0);
  if (!thread_.joinable()) {
    siginfo_t info;
    syscall(SYS_waitid, P_PIDFD, server_pidfd_, &info, WEXITED, nullptr);
    std::lock_guard<std::mutex> relock(mu_);
    server_gone_ = true;
    return;
  }
  lock.lock();
  changed_.wait_for(lock, std::chrono::milliseconds(5000), [&] { return server_gone_; });
}

void Reaper::kill_all(int sig) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < alive_.size(); ++i)
    if (alive_[i] && pids_[i] > 0) kill(pids_[i], sig);
}

void Reaper::kill_one(uint32_t mailbox) { send(kMsgKill, mailbox); }

int Reaper::pid_of(uint32_t mailbox) const {
  std::lock_guard<std::mutex> lock(mu_);
  return pids_[mailbox];
}

size_t Reaper::alive() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (bool a : alive_) n += a;
  return n;
}

}  // namespace tierflow
