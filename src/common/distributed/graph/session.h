// Session: one submitter of a level's engine and everything that is its own:
// its Orchestrator and scopes, its outstanding count and the threads waiting
// on it, its failures, its tasks' return values, its cancellation and the
// tasks someone wants to hear about when they finish. Every task slot names
// its session, and TaskGraph::finish reports each task to it. The Engine
// keeps a table of sessions; its first one backs the Worker's own submit_*
// and drain.
//
// Thread-safety: the Orchestrator runs on the session's submitting thread;
// everything else may be called from any thread (one mutex for the records,
// the waiters' condition variable next to it).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/distributed/adaptive_spin.h"
#include "common/distributed/graph/failure.h"
#include "common/distributed/graph/orchestrator.h"
#include "common/distributed/graph/task_id.h"

namespace tierflow {

struct SessionCounters {
  uint64_t submitted = 0, completed = 0, failed = 0, outstanding = 0, queued = 0, running = 0;
  double busy_seconds = 0;
  std::vector<double> busy_by_worker;  // seconds, by worker index (see Session::count_workers)
};

// Thrown by a submit to a session that is closing or closed.
class SessionClosed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Session {
 public:
  Session(uint32_t id, std::string name, TaskGraph& graph, Orchestrator::ReadySink sink, size_t payload_limit,
          uint32_t weight = 1);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  uint32_t id() const { return id_; }
  const std::string& name() const { return name_; }
  uint32_t weight() const { return weight_; }
  Orchestrator& orchestrator() { return orchestrator_; }

  // A submit runs between enter_submit() and exit_submit(); enter_submit()
  // throws SessionClosed once close_submits() was called. close_submits()
  // returns when no submit is in flight any more, so everything submitted
  // is counted by the time the session waits for it.
  void enter_submit();
  void exit_submit() { in_flight_.fetch_sub(1, std::memory_order_release); }
  void close_submits();
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  // TaskGraph: a task of this session was submitted / has finished. A failed
  // task's record and a completed task's non-empty return value are kept
  // before the outstanding count drops, so a drain that sees zero also sees
  // every record.
  void on_submit();
  void on_finish(TaskId id, const Failure* failure, std::string&& value);

  bool drained() const { return outstanding_.load(std::memory_order_acquire) == 0; }
  // Waits up to `timeout_ms` (< 0: no limit) until every task of the session
  // finished / until task `id` (whose `finished()` says so) finished. Every
  // 100 ms of waiting they call `on_slice()` (which may throw, e.g. on a
  // pending signal). A finish wakes only the waiters it concerns: a drain
  // when the count reaches zero, a task's waiters when that task finishes —
  // so many waiting threads cost the finish path nothing.
  bool wait_drained(int64_t timeout_ms, const std::function<void()>& on_slice);
  bool wait_task(TaskId id, const std::function<bool()>& finished, int64_t timeout_ms,
                 const std::function<void()>& on_slice);

  // Runs `done` once, as soon as every task submitted so far has finished:
  // at once on this thread when nothing is outstanding, else on the thread
  // whose finish takes the count to zero — the scheduler's, so `done` must
  // be short and never block. It is how a next-level worker answers its
  // parent the moment a request's work is over, without a wake-up of its
  // own thread on the way (see ChildPort and _level.py). At most one is
  // armed at a time; the session must not be submitted to until it ran.
  void when_drained(std::function<void()> done);
  // Whether a drain would report failures now.
  bool has_unreported_failures() const;

  // Failures not yet reported by a drain; each is reported once.
  std::vector<Failure> take_failures();
  // Any failure of this session, reported or not, for the session's lifetime.
  std::optional<Failure> failure_of(TaskId id) const;
  std::optional<FailureKind> failure_kind(TaskId id) const;

  // The pickled return value of a completed task, moved out once.
  bool take_result(TaskId id, std::string* out);
  void drop_result(TaskId id);
  bool may_hold_results() const { return results_held_.load(std::memory_order_relaxed) != 0; }

  // Cancels every task of this session with an id below `next_id` that has
  // not started: the scheduler fails it as cancelled with `reason` when it
  // next looks at it. Later submits are unaffected.
  void cancel_before(TaskId next_id, std::string reason);
  bool cancelled(TaskId id) const { return id < cancel_before_.load(std::memory_order_acquire); }
  std::string cancel_reason() const;

  // Done notifications for callbacks. watch() registers interest in a task
  // unless `is_finished()` says it already finished (then it returns false
  // and the caller acts at once); `take_done` returns the ids of watched
  // tasks that finished since the last call, waiting up to `timeout_ms`.
  bool watch(TaskId id, const std::function<bool()>& is_finished);
  std::vector<TaskId> take_done(int64_t timeout_ms, const std::function<void()>& on_slice);

  SessionCounters counters() const;
  // StatsCollector (scheduler thread): tasks queued and running, busy time.
  void note_queued(int64_t delta) { queued_.fetch_add(delta, std::memory_order_relaxed); }
  void note_running(int64_t delta) { running_.fetch_add(delta, std::memory_order_relaxed); }
  void note_busy(uint32_t worker, int64_t ns) {
    busy_ns_.fetch_add(ns, std::memory_order_relaxed);
    if (worker < n_workers_) busy_by_worker_[worker].fetch_add(ns, std::memory_order_relaxed);
  }
  // The Engine, before the session's first task: how many workers its
  // level has, so busy time is kept per worker too (without it, in total only).
  void count_workers(uint32_t n) {
    busy_by_worker_.reset(new std::atomic<int64_t>[n]());
    n_workers_ = n;
  }

 private:
  void notify();
  // Waits on cv_ in slices until done() (checked under mu_).
  bool wait(const std::function<bool()>& done, int64_t timeout_ms, const std::function<void()>& on_slice);

  const uint32_t id_;
  const std::string name_;
  const uint32_t weight_;
  Orchestrator orchestrator_;

  std::atomic<uint64_t> submitted_{0}, completed_{0}, failed_{0}, outstanding_{0};
  std::atomic<int64_t> queued_{0}, running_{0}, busy_ns_{0};
  std::unique_ptr<std::atomic<int64_t>[]> busy_by_worker_;
  uint32_t n_workers_ = 0;
  std::atomic<bool> closed_{false};
  std::atomic<int32_t> in_flight_{0};
  std::atomic<TaskId> cancel_before_{0};

  mutable std::mutex mu_;  // guards everything below
  std::unordered_map<TaskId, Failure> failures_;
  std::vector<TaskId> unreported_;
  std::unordered_map<TaskId, std::string> results_;
  std::string cancel_reason_;
  std::unordered_set<TaskId> watched_;
  std::vector<TaskId> done_;
  std::atomic<size_t> results_held_{0}, watching_{0};

  std::function<void()> on_drained_;          // armed by when_drained(), under mu_
  std::atomic<bool> drained_armed_{false};    // whoever exchanges it to false runs it
  void run_on_drained();

  std::condition_variable cv_;
  // Who waits, so a finish knows whether to wake anyone: threads in
  // wait_drained, the ids threads wait for in wait_task (a multiset under
  // mu_, its size mirrored in task_waiters_), a take_done caller.
  std::atomic<int> drain_waiters_{0}, task_waiters_{0}, done_waiters_{0};
  AdaptiveSpin drain_spin_{kWaitSpins};  // before a drain sleeps (shared by its drains)
  std::unordered_multiset<TaskId> waited_;
};

}  // namespace tierflow
