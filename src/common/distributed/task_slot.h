// TaskSlot: everything the engine knows about one live task.
//
// Ownership of the fields, which is what makes them race-free:
//  - "descriptor" fields are written by the submitting thread before the
//    task is published (the fanin guard is dropped with acq_rel, the inbox is
//    a mutex), and are read-only afterwards;
//  - `fanout` and `finished` are guarded by `mu`: a producer finishing and a
//    consumer wiring itself to it serialize on the producer's mutex;
//  - "scheduler" fields are touched only by the scheduler thread;
//  - `state`, `refs`, `fanin`, `poisoned_by` and `id` are atomics.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common/distributed/task_args.h"
#include "common/distributed/task_id.h"
#include "common/distributed/task_state.h"

namespace tierflow {

// One TensorMap entry to retire when the task is consumed.
struct TrackedRange {
  uint64_t alloc;
  uint64_t lo;
};

struct TaskSlot {
  std::atomic<TaskId> id{kNoTask};
  std::atomic<TaskState> state{TaskState::Consumed};
  std::atomic<int32_t> refs{0};   // own + scope + one per unfinished-or-wiring consumer
  std::atomic<int32_t> fanin{0};  // unfinished producers + 1 while being wired
  std::atomic<TaskId> poisoned_by{kNoTask};  // root failure of a failed producer

  // Descriptor (submitting thread, then read-only).
  TaskKind kind = TaskKind::Sub;
  uint32_t callable = 0;
  int32_t target = -1;               // chip index for a directed chip task
  std::vector<TaskArgs> members;     // one per group member; one otherwise
  std::vector<int32_t> group_chips;  // explicit chips of a group, or empty = any
  std::vector<uint64_t> blocks;      // arena blocks pinned until the task finishes
  std::vector<SlotIndex> producers;  // slots this task holds a consumer ref on
  std::vector<TrackedRange> ranges;  // TensorMap entries owned by this task
  uint32_t retries_left = 0;         // handed to the scheduler with the task

  // Guarded by mu.
  std::mutex mu;
  std::vector<SlotIndex> fanout;
  bool finished = false;
  TaskId root_cause = kNoTask;  // own id if it failed by itself, else the poisoner's

  // Scheduler thread only.
  uint32_t members_done = 0;
  std::vector<uint32_t> running_on;  // worker index per member while running
  bool member_failed = false;
  std::string fail_kind, fail_worker, fail_message, fail_traceback;
};

}  // namespace tierflow
