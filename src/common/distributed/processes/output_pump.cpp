#include "common/distributed/processes/output_pump.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <stdexcept>

namespace tierflow {

namespace {
void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    off += static_cast<size_t>(n);
  }
}
}  // namespace

OutputPump::OutputPump(std::vector<std::pair<int, std::string>> sources, int out_fd) : out_fd_(out_fd) {
  for (auto& s : sources) sources_.push_back(Source{s.first, s.second, {}});
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) throw std::runtime_error("eventfd failed");
}

OutputPump::~OutputPump() {
  finish(0);
  for (auto& s : sources_)
    if (s.fd >= 0) close(s.fd);
  for (auto& a : added_) close(a.first);
  close(stop_fd_);
}

void OutputPump::start() { thread_ = std::thread([this] { loop(); }); }

void OutputPump::add_source(int fd, std::string prefix) {
  {
    std::lock_guard<std::mutex> lock(add_mu_);
    added_.emplace_back(fd, std::move(prefix));
  }
  uint64_t one = 1;
  ssize_t rc = write(stop_fd_, &one, sizeof one);
  (void)rc;
}

void OutputPump::finish(int timeout_ms) {
  if (!thread_.joinable()) return;
  deadline_ms_ = timeout_ms;
  stop_requested_.store(true);
  uint64_t one = 1;
  ssize_t rc = write(stop_fd_, &one, sizeof one);
  (void)rc;
  thread_.join();
}

void OutputPump::emit(size_t i, const char* data, size_t n) {
  Source& s = sources_[i];
  s.pending.append(data, n);
  size_t start = 0;
  for (;;) {
    size_t nl = s.pending.find('\n', start);
    if (nl == std::string::npos) break;
    write_all(out_fd_, s.prefix + s.pending.substr(start, nl + 1 - start));
    start = nl + 1;
  }
  s.pending.erase(0, start);
}

void OutputPump::loop() {
  using clock = std::chrono::steady_clock;
  bool stopping = false;
  clock::time_point deadline;
  char buf[65536];
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<size_t> who;
    for (size_t i = 0; i < sources_.size(); ++i)
      if (sources_[i].fd >= 0) {
        fds.push_back(pollfd{sources_[i].fd, POLLIN, 0});
        who.push_back(i);
      }
    if (fds.empty() && stopping) return;
    if (!stopping) fds.push_back(pollfd{stop_fd_, POLLIN, 0});
    int wait_ms = -1;
    if (stopping) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
      if (left <= 0) break;
      wait_ms = static_cast<int>(left);
    }
    int rc = poll(fds.data(), fds.size(), wait_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) break;
    if (rc == 0 && stopping) break;
    if (!stopping && fds.back().revents != 0) {
      uint64_t count;
      ssize_t r = read(stop_fd_, &count, sizeof count);
      (void)r;
      {
        std::lock_guard<std::mutex> lock(add_mu_);
        for (auto& a : added_) sources_.push_back(Source{a.first, a.second, {}});
        added_.clear();
      }
      if (stop_requested_.load()) {
        stopping = true;
        deadline = clock::now() + std::chrono::milliseconds(deadline_ms_.load() < 0 ? 0 : deadline_ms_.load());
      }
    }
    for (size_t k = 0; k < who.size(); ++k) {
      if (fds[k].revents == 0) continue;
      Source& s = sources_[who[k]];
      ssize_t n = read(s.fd, buf, sizeof buf);
      if (n > 0) {
        emit(who[k], buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        if (!s.pending.empty()) write_all(out_fd_, s.prefix + s.pending + "\n");
        s.pending.clear();
        close(s.fd);
        s.fd = -1;
      }
    }
  }
  // Deadline passed: deliver partial lines rather than lose them.
  for (auto& s : sources_)
    if (!s.pending.empty()) {
      write_all(out_fd_, s.prefix + s.pending + "\n");
      s.pending.clear();
    }
}

}  // namespace tierflow
