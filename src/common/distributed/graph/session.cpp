#include "common/distributed/graph/session.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <thread>

namespace tierflow {

Session::Session(uint32_t id, std::string name, TaskGraph& graph, Orchestrator::ReadySink sink, size_t payload_limit,
                 uint32_t weight)
    : id_(id), name_(std::move(name)), weight_(weight == 0 ? 1 : weight),
      orchestrator_(graph, *this, std::move(sink), payload_limit) {}

void Session::enter_submit() {
  // seq_cst pairs with close_submits(): either the closer sees this submit
  // in flight (and waits for it), or this submit sees the session closed.
  in_flight_.fetch_add(1, std::memory_order_seq_cst);
  if (closed_.load(std::memory_order_seq_cst)) {
    in_flight_.fetch_sub(1, std::memory_order_release);
    throw SessionClosed("session '" + name_ + "' is closed");
  }
}

void Session::close_submits() {
  closed_.store(true, std::memory_order_seq_cst);
  // A submit blocked on the window sees the flag at its next slice and leaves.
  while (in_flight_.load(std::memory_order_seq_cst) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void Session::on_submit() {
  submitted_.fetch_add(1, std::memory_order_relaxed);
  outstanding_.fetch_add(1, std::memory_order_acq_rel);
}

void Session::on_finish(TaskId id, const Failure* failure, std::string&& value) {
  // The task's finished state is stored before this call. Pairs with the
  // fences in watch() and wait(): either they see the task finished, or this
  // sees them waiting.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool wanted = watching_.load(std::memory_order_relaxed) != 0;
  bool someone_waits_for_it = task_waiters_.load(std::memory_order_relaxed) != 0;
  bool wake = false;
  if (failure != nullptr || !value.empty() || wanted || someone_waits_for_it) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure != nullptr) {
      failures_[id] = *failure;
      unreported_.push_back(id);
    } else if (!value.empty()) {
      results_[id] = std::move(value);
      results_held_.store(results_.size(), std::memory_order_relaxed);
    }
    if (wanted && watched_.erase(id) != 0) {
      done_.push_back(id);
      watching_.store(watched_.size(), std::memory_order_relaxed);
      wake |= done_waiters_.load(std::memory_order_relaxed) != 0;
    }
    wake |= someone_waits_for_it && waited_.count(id) != 0;
  }
  (failure != nullptr ? failed_ : completed_).fetch_add(1, std::memory_order_relaxed);
  // acq_rel: a waiter that reads zero also reads the records stored above.
  bool last = outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  wake |= last && drain_waiters_.load(std::memory_order_relaxed) != 0;
  if (wake) notify();
  if (last && drained_armed_.load(std::memory_order_relaxed)) run_on_drained();
}

void Session::when_drained(std::function<void()> done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    on_drained_ = std::move(done);
  }
  // seq_cst pairs with the fence after the count drops in on_finish():
  // either that finish sees the callback armed, or this sees the count at
  // zero — both may, and the exchange in run_on_drained() picks one.
  drained_armed_.store(true, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (drained()) run_on_drained();
}

void Session::run_on_drained() {
  if (!drained_armed_.exchange(false, std::memory_order_acq_rel)) return;
  std::function<void()> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done.swap(on_drained_);
  }
  done();
}

bool Session::has_unreported_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !unreported_.empty();
}

void Session::notify() {
  { std::lock_guard<std::mutex> lock(mu_); }
  cv_.notify_all();
}

bool Session::wait(const std::function<bool()>& done, int64_t timeout_ms, const std::function<void()>& on_slice) {
  using clock = std::chrono::steady_clock;
  // A deadline beyond what the clock can hold is no deadline.
  constexpr int64_t kForever = int64_t(100) * 365 * 24 * 3600 * 1000;
  constexpr auto kSlice = std::chrono::milliseconds(100);
  bool limited = timeout_ms >= 0 && timeout_ms < kForever;
  auto deadline = clock::now() + std::chrono::milliseconds(limited ? timeout_ms : 0);
  std::unique_lock<std::mutex> lock(mu_);
  while (!done()) {
    auto slice = std::chrono::duration_cast<clock::duration>(kSlice);
    if (limited) {
      auto left = deadline - clock::now();
      if (left <= clock::duration::zero()) return false;
      if (left < slice) slice = left + std::chrono::milliseconds(1);
    }
    cv_.wait_for(lock, slice);
    if (on_slice && !done()) {
      lock.unlock();
      on_slice();
      lock.lock();
    }
  }
  return true;
}

namespace {
// Registers a waiter for the lifetime of a wait; seq_cst pairs with the
// fences in on_finish().
struct Registered {
  std::atomic<int>& count;
  explicit Registered(std::atomic<int>& c) : count(c) {
    count.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  ~Registered() { count.fetch_sub(1, std::memory_order_seq_cst); }
};
}  // namespace

bool Session::wait_drained(int64_t timeout_ms, const std::function<void()>& on_slice) {
  // A next-level worker drains after every request: its inner tasks often
  // finish within microseconds, sooner than a sleep and wake-up.
  if (timeout_ms != 0 && drain_spin_.spin([this] { return drained(); })) return true;
  Registered r(drain_waiters_);
  return wait([this] { return drained(); }, timeout_ms, on_slice);
}

bool Session::wait_task(TaskId id, const std::function<bool()>& finished, int64_t timeout_ms,
                        const std::function<void()>& on_slice) {
  if (finished()) return true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    waited_.insert(id);
  }
  bool ok;
  {
    Registered r(task_waiters_);
    ok = wait(finished, timeout_ms, on_slice);
  }
  std::lock_guard<std::mutex> lock(mu_);
  waited_.erase(waited_.find(id));
  return ok;
}

std::vector<Failure> Session::take_failures() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Failure> out;
  out.reserve(unreported_.size());
  for (TaskId id : unreported_) out.push_back(failures_.at(id));
  unreported_.clear();
  return out;
}

std::optional<Failure> Session::failure_of(TaskId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(id);
  if (it == failures_.end()) return std::nullopt;
  return it->second;
}

std::optional<FailureKind> Session::failure_kind(TaskId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(id);
  if (it == failures_.end()) return std::nullopt;
  return it->second.kind;
}

bool Session::take_result(TaskId id, std::string* out) {
  if (!may_hold_results()) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = results_.find(id);
  if (it == results_.end()) return false;
  *out = std::move(it->second);
  results_.erase(it);
  results_held_.store(results_.size(), std::memory_order_relaxed);
  return true;
}

void Session::drop_result(TaskId id) {
  if (!may_hold_results()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (results_.erase(id) != 0) results_held_.store(results_.size(), std::memory_order_relaxed);
}

void Session::cancel_before(TaskId next_id, std::string reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_reason_ = std::move(reason);
  }
  TaskId cur = cancel_before_.load(std::memory_order_relaxed);
  while (cur < next_id && !cancel_before_.compare_exchange_weak(cur, next_id, std::memory_order_acq_rel)) {
  }
}

std::string Session::cancel_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancel_reason_;
}

bool Session::watch(TaskId id, const std::function<bool()>& is_finished) {
  std::lock_guard<std::mutex> lock(mu_);
  watching_.store(watched_.size() + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (is_finished()) {
    watching_.store(watched_.size(), std::memory_order_relaxed);
    return false;
  }
  watched_.insert(id);
  return true;
}

std::vector<TaskId> Session::take_done(int64_t timeout_ms, const std::function<void()>& on_slice) {
  std::vector<TaskId> out;
  {
    Registered r(done_waiters_);
    wait([&] { return !done_.empty(); }, timeout_ms, on_slice);
  }
  std::lock_guard<std::mutex> lock(mu_);
  out.swap(done_);
  return out;
}

SessionCounters Session::counters() const {
  SessionCounters c;
  c.submitted = submitted_.load(std::memory_order_relaxed);
  c.completed = completed_.load(std::memory_order_relaxed);
  c.failed = failed_.load(std::memory_order_relaxed);
  c.outstanding = outstanding_.load(std::memory_order_relaxed);
  c.queued = static_cast<uint64_t>(std::max<int64_t>(0, queued_.load(std::memory_order_relaxed)));
  c.running = static_cast<uint64_t>(std::max<int64_t>(0, running_.load(std::memory_order_relaxed)));
  c.busy_seconds = static_cast<double>(busy_ns_.load(std::memory_order_relaxed)) * 1e-9;
  for (uint32_t w = 0; w < n_workers_; ++w)
    c.busy_by_worker.push_back(static_cast<double>(busy_by_worker_[w].load(std::memory_order_relaxed)) * 1e-9);
  return c;
}

}  // namespace tierflow
