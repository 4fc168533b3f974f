// OutputPump: carries the children's stdout/stderr (one pipe per child) to
// the parent's stderr, one complete line at a time, each line written with a
// single write() as "[chip 0] text". Lines of different children therefore
// never interleave mid-line; a partial last line is delivered at EOF with a
// newline added. Child output never shares a channel with control traffic.
#pragma once
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tierflow {

class OutputPump {
 public:
  // Takes ownership of the read ends in `sources` (fd, prefix like "[sub 1] ").
  OutputPump(std::vector<std::pair<int, std::string>> sources, int out_fd);
  ~OutputPump();
  void start();
  // Any thread: starts carrying another child's output (a replacement's).
  void add_source(int fd, std::string prefix);
  // Delivers what is left, until every pipe reaches EOF or `timeout_ms`
  // passes, then joins the thread.
  void finish(int timeout_ms);

 private:
  void loop();
  void emit(size_t i, const char* data, size_t n);

  struct Source {
    int fd;
    std::string prefix;
    std::string pending;
  };
  std::vector<Source> sources_;
  int out_fd_;
  int stop_fd_ = -1;  // eventfd: stop requested or sources added
  std::mutex add_mu_;
  std::vector<std::pair<int, std::string>> added_;  // guarded by add_mu_
  std::atomic<bool> stop_requested_{false};
  std::atomic<int> deadline_ms_{-1};  // set before stop_fd_ is signalled
  std::thread thread_;
};

}  // namespace tierflow
