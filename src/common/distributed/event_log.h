// EventLog: the rare things a user wants in their log — a worker died, came
// back or was given up, a task was retried, ran past its timeout or was
// cancelled. The scheduler thread queues a line when one happens (never on
// the path of a task that runs and finishes normally); a thread of the
// Python layer takes them and hands them to logging.getLogger("tierflow").
//
// Bounded: when nobody takes them, the oldest lines go and are counted, so
// a crash loop cannot grow memory. One mutex; push and take are the only
// operations, and neither runs per task.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace tierflow {

class EventLog {
 public:
  // Python's logging levels, so the layer above passes them through.
  enum Level : int { kDebug = 10, kInfo = 20, kWarning = 30 };
  struct Event {
    int level;
    std::string text;
  };

  explicit EventLog(size_t capacity = 4096) : capacity_(capacity) {}

  void push(int level, std::string text);
  // Waits up to `timeout_ms` (< 0: for ever) until there is something to
  // take or the log is closed; returns everything queued (empty on timeout).
  // Once closed and empty, returns at once with `*open` false.
  std::vector<Event> take(int64_t timeout_ms, bool* open);
  void close();
  uint64_t dropped() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> queue_;
  size_t capacity_;
  uint64_t dropped_ = 0;
  bool closed_ = false;
};

}  // namespace tierflow
