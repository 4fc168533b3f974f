// TaskGraph: the slots of the live tasks and every transition of a task's
// state. Orchestrators add tasks (their sessions' threads), the Scheduler
// readies, starts and finishes them (its thread); consumption happens on
// whichever thread drops the last reference.
//
// Invariants:
//  - a TensorMap entry exists only for a task that is not yet consumed (or as
//    the tombstone of a failed one), and a slot returns to the Ring only after
//    its entries are retired, so an entry always names the task its slot holds;
//  - a consumer ref is taken only with try-increment-if-nonzero under the map
//    mutex, so a task whose count already reached zero is never revived;
//  - the own ref is dropped in finish(), so a task is never consumed while
//    pending or running; a task finished early (cancelled while pending)
//    holds a guard ref until its last producer has finished with it;
//  - a failure travels only along edges that carry it: to consumers that
//    read bytes the failed task should have written.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/distributed/memory/arena.h"
#include "common/distributed/memory/lent_memory.h"
#include "common/distributed/graph/failure.h"
#include "common/distributed/graph/ring.h"
#include "common/distributed/graph/schedule_observer.h"
#include "common/distributed/graph/task_slot.h"
#include "common/distributed/graph/tensor_map.h"

namespace tierflow {

class TraceRecorder;

struct Outcome {
  bool ok = true;
  Failure failure;    // when !ok; finish() fills in the task's id and name
  std::string value;  // when ok: the pickled return value, empty for None
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
  const TaskSlot& slot(SlotIndex s) const { return slots_[s]; }
  Arena* arena() const { return arena_.get(); }
  // Memory of the levels above, lent to this level by their running task.
  LentMemory& lent() { return lent_; }
  // The id the next begin() hands out: every task with a smaller id exists.
  TaskId next_id() const { return next_id_.load(std::memory_order_acquire); }

  // Names of the registered callables, for tasks submitted without a name.
  void set_callable_names(TaskKind kind, std::vector<std::string> names);
  std::string callable_name(TaskKind kind, uint32_t callable) const;
  std::string name_of(const TaskSlot& t) const { return t.name.empty() ? callable_name(t.kind, t.callable) : t.name; }

  // Prepares an acquired slot for a new task of `session`; returns its id.
  // `in_scope` adds the scope's reference.
  TaskId begin(SlotIndex s, Session* session, bool in_scope);
  // Infers the task's producers from its tracked tensors and wires it to
  // them. Returns true when the task has no unfinished producer (it must then
  // be handed to the scheduler by the caller).
  bool wire(SlotIndex s);

  // Scheduler: pending -> ready.
  void mark_ready(SlotIndex s) { slots_[s].state.store(TaskState::Ready, std::memory_order_release); }
  // Scheduler: ready -> running, unless the task was cancelled (false). A
  // retried task starts again without a new claim.
  bool try_start(SlotIndex s);
  // Any thread: cancels the task if it has not started; true on success.
  bool cancel(SlotIndex s, TaskId id);
  bool cancel_claimed(const TaskSlot& t) const {
    return (t.claim.load(std::memory_order_acquire) & kClaimCancelled) != 0;
  }

  // Scheduler: the task finished; consumers that became ready (or must fail
  // without running) are appended to `ready`.
  void finish(SlotIndex s, Outcome&& outcome, std::vector<SlotIndex>* ready);
  // Scheduler: finishes a pending task (cancelled) while producers still run;
  // it is consumed only after the last of them finished (see settle_early()).
  void finish_early(SlotIndex s, Outcome&& outcome, std::vector<SlotIndex>* ready);
  // Scheduler: a task finished early became "ready"; true if it was one (its
  // guard ref is dropped and it must not run).
  bool settle_early(SlotIndex s);
  // The outcome of a task that does not run because `root` failed (or, with
  // root == kNoTask, because it was cancelled for `reason`).
  Outcome not_run(TaskId root, const std::string& reason) const;
  // Drops one reference; the last one consumes the task.
  void release(SlotIndex s);

  // The task's state while its slot holds it, else Consumed.
  TaskState state_of(SlotIndex s, TaskId id) const;
  bool task_finished(SlotIndex s, TaskId id) const { return finished(state_of(s, id)); }
  GraphCounters counters() const;
  bool all_finished() const { return outstanding_.load(std::memory_order_acquire) == 0; }
  // After the level stopped: no task touches the arena any more.
  void drop_arena() { arena_.reset(); }

  // Records every dependency edge for a trace (set before any submit).
  void set_trace(TraceRecorder* t) { trace_ = t; }
  // Observers of every transition, added before any task is submitted.
  void add_observer(ScheduleObserver* o) { observers_.push_back(o); }
  const std::vector<ScheduleObserver*>& observers() const { return observers_; }

 private:
  void consume(SlotIndex s);
  void poison(TaskSlot& t, TaskId root) {
    TaskId none = kNoTask;
    // relaxed: the poison is read after the consumer's fanin drops to zero,
    // an acq_rel RMW that orders it (or, at wiring, on the same thread).
    t.poisoned_by.compare_exchange_strong(none, root, std::memory_order_relaxed);
  }
  void sweep_freed_allocations();

  std::shared_ptr<Arena> arena_;
  TraceRecorder* trace_ = nullptr;
  LentMemory lent_;
  Ring ring_;
  std::unique_ptr<TaskSlot[]> slots_;
  std::atomic<TaskId> next_id_{1};
  // Set at init and again when a daemon learns a callable at run time;
  // read when a Task's name is asked for (never on the dispatch path).
  mutable std::mutex names_mu_;
  std::vector<std::string> callable_names_[3];

  mutable std::mutex map_mu_;  // guards map_, block_of_alloc_, sweep_at_
  TensorMap map_;
  std::unordered_map<uint64_t, uint64_t> block_of_alloc_;  // allocations with tombstones -> block offset
  size_t sweep_at_ = 64;

  mutable std::mutex roots_mu_;
  std::unordered_map<TaskId, std::shared_ptr<const Failure>> roots_;  // root failures, for their dependents

  std::atomic<uint64_t> submitted_{0}, completed_{0}, failed_{0}, outstanding_{0};
  std::vector<ScheduleObserver*> observers_;
};

}  // namespace tierflow
