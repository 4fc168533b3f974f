#include "common/distributed/task_graph.h"

#include <algorithm>
#include <cassert>
#include <chrono>

namespace tierflow {

TaskGraph::TaskGraph(uint32_t window, std::shared_ptr<Arena> arena)
    : arena_(std::move(arena)), ring_(window), slots_(new TaskSlot[window]) {}

TaskId TaskGraph::begin(SlotIndex s, bool in_scope) {
  TaskSlot& t = slots_[s];
  TaskId id = next_id_.fetch_add(1, std::memory_order_relaxed);
  t.producers.clear();
  t.ranges.clear();
  t.blocks.clear();
  t.members_done = 0;
  t.running_on.clear();
  t.member_failed = false;
  t.fail_kind.clear();
  t.fail_worker.clear();
  t.fail_message.clear();
  t.fail_traceback.clear();
  {
    std::lock_guard<std::mutex> lock(t.mu);
    t.fanout.clear();
    t.finished = false;
    t.root_cause = kNoTask;
  }
  t.refs.store(in_scope ? 2 : 1, std::memory_order_relaxed);
  t.fanin.store(1, std::memory_order_relaxed);  // wiring guard, dropped by wire()
  t.poisoned_by.store(kNoTask, std::memory_order_relaxed);
  t.state.store(TaskState::Pending, std::memory_order_relaxed);
  // Publishing the id last (release) lets state_of() tell a reused slot apart.
  t.id.store(id, std::memory_order_release);
  submitted_.fetch_add(1, std::memory_order_relaxed);
  outstanding_.fetch_add(1, std::memory_order_acq_rel);
  return id;
}

namespace {
bool try_ref(TaskSlot& p) {
  int32_t r = p.refs.load(std::memory_order_relaxed);
  while (r > 0)
    if (p.refs.compare_exchange_weak(r, r + 1, std::memory_order_acq_rel)) return true;
  return false;
}
}  // namespace

bool TaskGraph::wire(SlotIndex s) {
  TaskSlot& t = slots_[s];
  TaskId id = t.id.load(std::memory_order_relaxed);
  std::vector<TensorMapHit> hits;
  {
    std::lock_guard<std::mutex> lock(map_mu_);
    // Look up every tensor before inserting any, so a task never depends on
    // itself (a group's members share one task).
    for (auto& m : t.members)
      for (auto& d : m.tensors)
        if (tracked(d.tag)) map_.lookup(d.block, d.lo, d.hi, writes(d.tag), &hits);
    for (auto& m : t.members)
      for (auto& d : m.tensors)
        if (tracked(d.tag) && d.lo < d.hi) {
          map_.insert(d.block, d.lo, d.hi, writes(d.tag), s, id);
          t.ranges.push_back(TrackedRange{d.block, d.lo});
        }
    std::sort(hits.begin(), hits.end(), [](const TensorMapHit& a, const TensorMapHit& b) { return a.task < b.task; });
    hits.erase(std::unique(hits.begin(), hits.end(),
                           [](const TensorMapHit& a, const TensorMapHit& b) { return a.task == b.task; }),
               hits.end());
    for (auto& h : hits) {
      if (h.slot == kTombstone) {
        TaskId none = kNoTask;
        t.poisoned_by.compare_exchange_strong(none, h.task, std::memory_order_relaxed);
      } else if (try_ref(slots_[h.slot])) {
        t.producers.push_back(h.slot);
      } else {
        // Its count reached zero: it finished and is being consumed on another
        // thread, which waits for map_mu_ to retire its entries. The slot
        // cannot be reused meanwhile; a failure must still poison us.
        TaskSlot& gone = slots_[h.slot];
        if (gone.state.load(std::memory_order_acquire) == TaskState::Failed) {
          std::lock_guard<std::mutex> slot_lock(gone.mu);
          TaskId none = kNoTask;
          t.poisoned_by.compare_exchange_strong(none, gone.root_cause, std::memory_order_relaxed);
        }
      }
    }
  }
  for (SlotIndex p : t.producers) {
    TaskSlot& prod = slots_[p];
    std::lock_guard<std::mutex> lock(prod.mu);
    if (!prod.finished) {
      t.fanin.fetch_add(1, std::memory_order_relaxed);
      prod.fanout.push_back(s);
    } else if (prod.state.load(std::memory_order_relaxed) == TaskState::Failed) {
      TaskId none = kNoTask;
      t.poisoned_by.compare_exchange_strong(none, prod.root_cause, std::memory_order_relaxed);
    }
  }
  // Dropping the guard publishes the descriptor (acq_rel pairs with finish()).
  return t.fanin.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

void TaskGraph::finish(SlotIndex s, const Outcome& outcome, std::vector<SlotIndex>* ready) {
  TaskSlot& t = slots_[s];
  TaskId id = t.id.load(std::memory_order_relaxed);
  std::vector<SlotIndex> fanout;
  TaskId root = kNoTask;
  {
    std::lock_guard<std::mutex> lock(t.mu);
    t.finished = true;
    if (!outcome.ok) {
      TaskId p = t.poisoned_by.load(std::memory_order_relaxed);
      t.root_cause = (outcome.kind == "dependency_failed" && p != kNoTask) ? p : id;
      root = t.root_cause;
    }
    t.state.store(outcome.ok ? TaskState::Completed : TaskState::Failed, std::memory_order_release);
    fanout.swap(t.fanout);
  }
  if (!outcome.ok) {
    Failure f{id, outcome.worker, outcome.kind, outcome.message, outcome.traceback,
              outcome.kind == "dependency_failed" ? root : kNoTask};
    std::lock_guard<std::mutex> lock(fail_mu_);
    failures_[id] = f;
    unreported_.push_back(std::move(f));
    failed_.fetch_add(1, std::memory_order_relaxed);
  } else {
    completed_.fetch_add(1, std::memory_order_relaxed);
  }
  for (SlotIndex c : fanout) {
    TaskSlot& cons = slots_[c];
    if (!outcome.ok) {
      TaskId none = kNoTask;
      cons.poisoned_by.compare_exchange_strong(none, root, std::memory_order_relaxed);
    }
    if (cons.fanin.fetch_sub(1, std::memory_order_acq_rel) == 1) ready->push_back(c);
  }
  for (SlotIndex p : t.producers) release(p);
  if (arena_)
    for (uint64_t b : t.blocks) arena_->release(b);
  outstanding_.fetch_sub(1, std::memory_order_acq_rel);
  release(s);
  notify_waiters();
}

void TaskGraph::release(SlotIndex s) {
  if (slots_[s].refs.fetch_sub(1, std::memory_order_acq_rel) == 1) consume(s);
}

void TaskGraph::consume(SlotIndex s) {
  TaskSlot& t = slots_[s];
  TaskId id = t.id.load(std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(map_mu_);
    if (t.state.load(std::memory_order_acquire) == TaskState::Failed) {
      TaskId root;
      {
        std::lock_guard<std::mutex> slot_lock(t.mu);
        root = t.root_cause;
      }
      for (auto& r : t.ranges) map_.entomb(r.alloc, r.lo, id, root);
    } else {
      for (auto& r : t.ranges) map_.retire(r.alloc, r.lo, id);
    }
  }
  t.state.store(TaskState::Consumed, std::memory_order_release);
  ring_.release(s);
}

TaskState TaskGraph::state_of(SlotIndex s, TaskId id) const {
  const TaskSlot& t = slots_[s];
  if (t.id.load(std::memory_order_acquire) == id) {
    TaskState st = t.state.load(std::memory_order_acquire);
    // Re-check: the slot may have been reused between the two loads.
    if (t.id.load(std::memory_order_acquire) == id && st != TaskState::Consumed) return st;
  }
  std::lock_guard<std::mutex> lock(fail_mu_);
  return failures_.count(id) ? TaskState::Failed : TaskState::Consumed;
}

std::optional<Failure> TaskGraph::failure_of(TaskId id) const {
  std::lock_guard<std::mutex> lock(fail_mu_);
  auto it = failures_.find(id);
  if (it == failures_.end()) return std::nullopt;
  return it->second;
}

std::vector<Failure> TaskGraph::take_failures() {
  std::lock_guard<std::mutex> lock(fail_mu_);
  std::vector<Failure> out;
  out.swap(unreported_);
  return out;
}

void TaskGraph::clear_failed_ranges() {
  std::lock_guard<std::mutex> lock(map_mu_);
  map_.clear_tombstones();
}

GraphCounters TaskGraph::counters() const {
  GraphCounters c;
  c.submitted = submitted_.load();
  c.completed = completed_.load();
  c.failed = failed_.load();
  c.outstanding = outstanding_.load();
  c.live = ring_.in_use();
  return c;
}

void TaskGraph::notify_waiters() {
  if (waiters_.load(std::memory_order_seq_cst) == 0) return;
  { std::lock_guard<std::mutex> lock(wait_mu_); }
  wait_cv_.notify_all();
}

bool TaskGraph::wait_until(const std::function<bool()>& done, int64_t timeout_ms,
                           const std::function<void()>& on_slice, int64_t slice_ms) {
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  std::unique_lock<std::mutex> lock(wait_mu_);
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  struct Leave {
    std::atomic<int>& w;
    ~Leave() { w.fetch_sub(1, std::memory_order_seq_cst); }
  } leave{waiters_};
  while (!done()) {
    auto slice = std::chrono::milliseconds(slice_ms);
    if (timeout_ms >= 0) {
      auto left = deadline - clock::now();
      if (left <= clock::duration::zero()) return false;
      if (left < slice) slice = std::chrono::duration_cast<std::chrono::milliseconds>(left) + std::chrono::milliseconds(1);
    }
    wait_cv_.wait_for(lock, slice);
    if (on_slice && !done()) {
      lock.unlock();
      on_slice();
      lock.lock();
    }
  }
  return true;
}

}  // namespace tierflow
