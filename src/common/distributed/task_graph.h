// TaskGraph: the slots of the live tasks and the rules that move a task
// through its states. The Orchestrator adds tasks (caller thread), the
// Scheduler finishes them (scheduler thread); consumption happens on whichever
// thread drops the last reference.
//
// Invariants:
//  - a TensorMap entry exists only for a task that is not yet consumed, and a
//    slot returns to the Ring only after its entries are retired, so an entry
//    always names the task its slot holds;
//  - a consumer ref is taken only with try-increment-if-nonzero under the map
//    mutex, so a task whose count already reached zero is never revived;
//  - the own ref is dropped in finish(), so a task is never consumed while
//    pending or running.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "common/distributed/arena.h"
#include "common/distributed/failure.h"
#include "common/distributed/ring.h"
#include "common/distributed/task_slot.h"
#include "common/distributed/tensor_map.h"

namespace tierflow {

struct Outcome {
  bool ok = true;
  std::string kind;  // failure kind when !ok
  std::string worker, message, traceback;
};

struct GraphCounters {
  uint64_t submitted = 0, completed = 0, failed = 0, live = 0, outstanding = 0;
};

class TaskGraph {
 public:
  TaskGraph(uint32_t window, std::shared_ptr<Arena> arena);

  Ring& ring() { return ring_; }
  uint32_t window() const { return ring_.window(); }
  TaskSlot& slot(SlotIndex s) { return slots_[s]; }
  Arena* arena() const { return arena_.get(); }

  // Prepares an acquired slot for a new task; returns its id. `in_scope`
  // adds the scope's reference.
  TaskId begin(SlotIndex s, bool in_scope);
  // Infers the task's producers from its tracked tensors and wires it to
  // them. Returns true when the task has no unfinished producer (it must then
  // be handed to the scheduler by the caller).
  bool wire(SlotIndex s);

  // Scheduler: the task finished; consumers that became ready (or must fail
  // without running) are appended to `ready`.
  void finish(SlotIndex s, const Outcome& outcome, std::vector<SlotIndex>* ready);
  // Drops one reference; the last one consumes the task.
  void release(SlotIndex s);

  // Queries, valid for any id ever returned by begin().
  TaskState state_of(SlotIndex s, TaskId id) const;
  std::optional<Failure> failure_of(TaskId id) const;
  std::vector<Failure> take_failures();  // failures since the previous call
  // Forgets the bytes of consumed failed tasks, so later tasks touching them
  // run again (called once a drain has reported the failures).
  void clear_failed_ranges();
  GraphCounters counters() const;

  // Waits up to `timeout_ms` (< 0: no limit) for `done()` to hold, in slices
  // of `slice_ms` calling `on_slice()` (which may throw) between them.
  bool wait_until(const std::function<bool()>& done, int64_t timeout_ms,
                  const std::function<void()>& on_slice, int64_t slice_ms = 100);
  bool all_finished() const { return outstanding_.load(std::memory_order_acquire) == 0; }
  bool task_finished(SlotIndex s, TaskId id) const { return finished(state_of(s, id)); }

 private:
  void consume(SlotIndex s);
  void notify_waiters();

  std::shared_ptr<Arena> arena_;
  Ring ring_;
  std::unique_ptr<TaskSlot[]> slots_;
  std::atomic<TaskId> next_id_{1};

  mutable std::mutex map_mu_;  // guards map_
  TensorMap map_;

  mutable std::mutex fail_mu_;  // guards failures_, unreported_
  std::unordered_map<TaskId, Failure> failures_;
  std::vector<Failure> unreported_;

  std::atomic<uint64_t> submitted_{0}, completed_{0}, failed_{0}, outstanding_{0};

  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  std::atomic<int> waiters_{0};
};

}  // namespace tierflow
