// ReadySet: the ready tasks of every session, and which one an idle worker
// takes next. Scheduler thread only; testable without threads.
//
// Each session keeps its own FIFOs (submission order of readiness kept):
//   sub            any idle sub-worker
//   any_chip       any idle chip
//   directed[c]    chip c only (submit_next_level(worker=c))
//   groups         group tasks
// Between sessions, an idle worker is served in weighted deficit round robin,
// separately for the two kinds of worker (sub-workers; chips, groups
// included): a session's turn adds its weight to its credit, a task costs 1
// (a group its size), a session keeps the turn while its credit pays for
// its next task, and a session whose queues of that kind empty loses its
// credit — an idle session banks nothing. Within a session, a chip takes the
// oldest ready task it can run (directed to it or to any chip).
//
// Groups: at most one group is "the head" at any time, across all sessions;
// the scheduler reserves idle chips for it until it has enough. One head
// shared by every session means two half-reserved groups can never wait on
// each other's chips.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "common/distributed/graph/task_id.h"

namespace tierflow {

struct ReadyEntry {
  SlotIndex slot = 0;
  TaskId id = kNoTask;
  TaskKind kind = TaskKind::Sub;
  int32_t target = -1;  // chip of a directed chip task
  uint32_t cost = 1;    // members of a group, else 1
  uint32_t session = 0;
};

class ReadySet {
 public:
  explicit ReadySet(uint32_t chips) : chips_(chips) {}

  // A session's weight (>= 1); a session is known from its first push on.
  void set_weight(uint32_t session, uint32_t weight);
  void push(const ReadyEntry& e);

  // The next task for an idle sub-worker / for idle chip `c` (single-chip
  // work only); false when there is none.
  bool pop_sub(ReadyEntry* out);
  bool pop_chip(uint32_t c, ReadyEntry* out);
  // The next group to become the head (by the same round robin, charged its
  // size); false when no session has a ready group.
  bool pop_group(ReadyEntry* out);

  // Removes (and hands to `drop`) every entry for which `drop` returns true.
  void remove_if(const std::function<bool(const ReadyEntry&)>& drop);
  // Every queued entry, in no particular order.
  void for_each(const std::function<void(const ReadyEntry&)>& f) const;

  uint64_t depth() const { return depth_; }
  uint64_t depth(uint32_t session) const;
  bool has_sub() const { return subs_queued_ != 0; }
  bool has_any_chip() const { return any_chip_queued_ != 0; }
  bool has_directed(uint32_t c) const;
  bool has_groups() const { return groups_queued_ != 0; }

 private:
  enum Class { kSubClass = 0, kChipClass = 1 };
  struct Queues {
    uint32_t weight = 1;
    int64_t credit[2] = {0, 0};
    bool in_ring[2] = {false, false};
    std::deque<ReadyEntry> sub, any_chip, groups;
    std::vector<std::deque<ReadyEntry>> directed;
    uint64_t size = 0;
    bool chip_work() const;
  };
  struct Ring {
    std::vector<uint32_t> members;  // sessions with work of this class, in turn order
    size_t at = 0;                  // whose turn it is
    bool fresh = true;              // the session at `at` has not been credited for this turn
  };

  Queues& queues(uint32_t session);
  // Round robin over the class's ring: the first session (from the current
  // turn) for which `pick` finds a task it can pay for; `pick` returns that
  // task's queue or null. Charges the cost and pops.
  bool serve(Class k, const std::function<std::deque<ReadyEntry>*(Queues&)>& pick, ReadyEntry* out);
  void leave_ring_if_idle(Class k, uint32_t session);
  void count(const ReadyEntry& e, int delta);

  uint32_t chips_;
  std::vector<Queues> sessions_;  // by session id
  Ring rings_[2];
  uint64_t depth_ = 0, subs_queued_ = 0, any_chip_queued_ = 0, groups_queued_ = 0;
  std::vector<uint64_t> directed_queued_;
};

}  // namespace tierflow
