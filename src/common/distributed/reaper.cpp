#include "common/distributed/reaper.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
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

Reaper::Reaper(std::vector<WatchedChild> children, OnDeath on_death)
    : children_(std::move(children)), exited_(children_.size(), false), on_death_(std::move(on_death)) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) throw std::runtime_error("eventfd failed");
}

Reaper::~Reaper() {
  stop();
  for (auto& c : children_)
    if (c.pidfd >= 0) close(c.pidfd);
  if (stop_fd_ >= 0) close(stop_fd_);
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

void Reaper::loop() {
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<size_t> who;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < children_.size(); ++i)
        if (!exited_[i]) {
          fds.push_back(pollfd{children_[i].pidfd, POLLIN, 0});
          who.push_back(i);
        }
    }
    fds.push_back(pollfd{stop_fd_, POLLIN, 0});
    int rc = poll(fds.data(), fds.size(), -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds.back().revents != 0) return;
    for (size_t k = 0; k + 1 < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      size_t i = who[k];
      siginfo_t info;
      memset(&info, 0, sizeof info);
      if (syscall(SYS_waitid, P_PIDFD, children_[i].pidfd, &info, WEXITED, nullptr) != 0) {
        if (errno == EINTR) continue;
        info.si_code = CLD_EXITED;
        info.si_status = -1;
      }
      std::string why = children_[i].name + " (pid " + std::to_string(children_[i].pid) +
                        ") died: " + describe(info.si_code, info.si_status);
      {
        std::lock_guard<std::mutex> lock(mu_);
        exited_[i] = true;
      }
      exited_cv_.notify_all();
      on_death_(i, why);
    }
  }
}

bool Reaper::wait_all_exited(int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  auto all = [&] {
    for (bool e : exited_)
      if (!e) return false;
    return true;
  };
  if (timeout_ms < 0) {
    exited_cv_.wait(lock, all);
    return true;
  }
  return exited_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), all);
}

void Reaper::kill_all(int sig) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < children_.size(); ++i)
    if (!exited_[i]) syscall(SYS_pidfd_send_signal, children_[i].pidfd, sig, nullptr, 0);
}

size_t Reaper::alive() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (bool e : exited_) n += !e;
  return n;
}

}  // namespace tierflow
