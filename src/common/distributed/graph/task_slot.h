// TaskSlot: everything the engine knows about one live task.
//
// Ownership of the fields, which is what makes them race-free:
//  - "descriptor" fields are written by the submitting thread before the
//    task is published (the fanin guard is dropped with acq_rel, the inbox is
//    a mutex), and are read-only afterwards;
//  - `fanout`, `finished` and `root_cause` are guarded by `mu`: a producer
//    finishing and a consumer wiring itself to it serialize on the
//    producer's mutex;
//  - "scheduler" fields are touched only by the scheduler thread;
//  - `id`, `state`, `claim`, `refs`, `fanin` and `poisoned_by` are atomics.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/distributed/memory/arena.h"
#include "common/distributed/graph/failure.h"
#include "common/distributed/graph/task_args.h"
#include "common/distributed/graph/task_id.h"
#include "common/distributed/graph/task_state.h"

namespace tierflow {

class Session;

// A consumer of this task, and whether this task's failure reaches it: true
// when the consumer reads bytes this task writes; false when the edge only
// orders the two (the consumer overwrites or this task only read).
struct FanoutEdge {
  SlotIndex consumer;
  bool carries;
};

// Who may still decide a task's fate, as one CAS on `claim`: while it holds
// the bare id, the task can be started by the scheduler (id | kStarted) or
// cancelled by Task.cancel() (id | kCancelled), never both. Carrying the id
// makes a CAS against a reused slot fail.
constexpr uint64_t kClaimStarted = 1ull << 62;
constexpr uint64_t kClaimCancelled = 1ull << 63;

// Exception class names (module.QualName) a task is retried on.
using RetryOn = std::shared_ptr<const std::vector<std::string>>;

struct TaskSlot {
  std::atomic<TaskId> id{kNoTask};
  std::atomic<TaskState> state{TaskState::Consumed};
  std::atomic<uint64_t> claim{0};
  std::atomic<int32_t> refs{0};   // own + scope + one per unfinished-or-wiring consumer (+1 early guard)
  std::atomic<int32_t> fanin{0};  // unfinished producers + 1 while being wired
  std::atomic<TaskId> poisoned_by{kNoTask};  // root failure that reaches this task
  // Set (release) once wire() is done with `producers`, cleared by begin():
  // what lets the scheduler read a pending task's producers (explain()).
  std::atomic<bool> wired{false};

  // Descriptor (submitting thread, then read-only). `session` is valid until
  // the task finished; `session_id` for as long as the slot holds the task.
  Session* session = nullptr;
  uint32_t session_id = 0;
  TaskKind kind = TaskKind::Sub;
  uint32_t callable = 0;
  int32_t target = -1;               // chip index for a directed chip task
  std::vector<TaskArgs> members;     // one per group member; one otherwise
  std::vector<int32_t> group_chips;  // explicit chips of a group, or empty = any
  std::vector<BlockRef> blocks;      // per tensor, members in order: its allocation, pinned until finish
  std::vector<SlotIndex> producers;  // slots this task holds a consumer ref on
  std::string name;                  // empty: the callable's name
  uint32_t retries = 0;              // re-runs allowed after a death or a retry_on exception
  RetryOn retry_on;                  // null: exceptions are not retried
  int64_t timeout_ms = -1;           // running time allowed per attempt; < 0: no limit

  // Guarded by mu.
  std::mutex mu;
  std::vector<FanoutEdge> fanout;
  bool finished = false;
  bool early = false;           // finished (cancelled) while its producers ran: holds a guard ref
  TaskId root_cause = kNoTask;  // own id if it failed by itself, else the root that reached it

  // Scheduler thread only.
  uint32_t members_done = 0;
  uint32_t attempts = 0;
  uint32_t retries_left = 0;
  std::vector<uint32_t> running_on;  // worker index per member while running
  // The most telling member failure of this attempt, with its exception
  // class names (for retry_on); allocated only when a member fails.
  struct AttemptFailure {
    Failure failure;
    std::string types;
  };
  std::unique_ptr<AttemptFailure> failed;
  std::string value;  // the pickled return value (of member 0)
  // StatsCollector's, scheduler thread only: 0 none, 1 counted as queued, 2 as running.
  mutable uint8_t observed = 0;
};

}  // namespace tierflow
