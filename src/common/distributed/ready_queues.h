// ReadyQueues: ready work, kept per kind of worker that can run it, so the
// scheduler never pops and re-queues work no idle worker can take.
//   sub      - any idle sub-worker
//   directed - one FIFO per chip (submit_next_level(worker=i))
//   any_chip - any idle chip
//   groups   - group tasks, FIFO; the head reserves chips as they go idle
// An entry names its task by (slot, id): a task cancelled while queued is
// finished at once and its entry goes stale, which the id and state tell.
// Scheduler thread only.
#pragma once
#include <cstdint>
#include <deque>
#include <vector>

#include "common/distributed/task_id.h"

namespace tierflow {

struct QueuedTask {
  SlotIndex slot;
  TaskId id;
};

struct ReadyQueues {
  explicit ReadyQueues(uint32_t chips) : directed(chips) {}

  std::deque<QueuedTask> sub;
  std::vector<std::deque<QueuedTask>> directed;
  std::deque<QueuedTask> any_chip;
  std::deque<QueuedTask> groups;

  template <typename F>
  void for_each(F&& f) {
    f(sub);
    for (auto& q : directed) f(q);
    f(any_chip);
    f(groups);
  }

  uint64_t depth() const {
    uint64_t n = sub.size() + any_chip.size() + groups.size();
    for (auto& q : directed) n += q.size();
    return n;
  }
};

}  // namespace tierflow
