// TensorMap: which live tasks wrote or read which bytes of which allocation.
//
// Dependency inference in one place. For a new access [lo, hi) of allocation
// A the map returns every earlier live task it conflicts with:
//   read  after write  (RAW): a reader depends on overlapping writers;
//   write after read   (WAR): a writer depends on overlapping readers;
//   write after write  (WAW): a writer depends on overlapping writers.
// Two reads never conflict; disjoint ranges never conflict.
//
// Per allocation the entries are ordered by `lo`, and the allocation keeps the
// longest entry length it has ever held, so an overlap query visits only the
// entries starting in [lo - max_len, hi): thousands of disjoint live slices of
// one buffer cost a logarithmic lookup, not a scan.
//
// A writer that fully covers an earlier entry removes it: the writer already
// depends on that task, so any later conflict with those bytes is ordered
// after it through the writer. Entries of a task are retired when the task is
// consumed.
//
// Not thread-safe by itself; the Orchestrator holds one mutex around lookup +
// insert and around retire.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

#include "common/distributed/task_id.h"

namespace tierflow {

// A conflicting earlier access: a live task (slot, task), or the tombstone
// of a failed task that is already consumed (slot == kTombstone, `task` is
// the root failure to propagate).
constexpr SlotIndex kTombstone = 0xffffffffu;

struct TensorMapHit {
  SlotIndex slot;
  TaskId task;
};

class TensorMap {
 public:
  // Appends to `out` every live task that conflicts with this access. May
  // report one task more than once.
  void lookup(uint64_t alloc, uint64_t lo, uint64_t hi, bool writes, std::vector<TensorMapHit>* out) const;
  // Records the access. Call after lookup() for all of a task's tensors, so
  // a task never depends on itself.
  void insert(uint64_t alloc, uint64_t lo, uint64_t hi, bool writes, SlotIndex slot, TaskId task);
  // Removes the entry recorded for (alloc, lo, task), if still present.
  void retire(uint64_t alloc, uint64_t lo, TaskId task);
  // Turns the entry of a consumed *failed* task into a tombstone carrying
  // its root failure: a later task touching those bytes in a conflicting way
  // depends on the failure and fails too, although the task is gone.
  void entomb(uint64_t alloc, uint64_t lo, TaskId task, TaskId root);
  // Drops every tombstone (after the failures were reported by a drain).
  void clear_tombstones();

  size_t size() const;  // live entries, for tests and stats

 private:
  struct Entry {
    uint64_t hi;
    SlotIndex slot;
    TaskId task;
    bool writes;
  };
  struct Alloc {
    std::multimap<uint64_t, Entry> by_lo;
    uint64_t max_len = 0;
  };
  std::unordered_map<uint64_t, Alloc> allocs_;
};

}  // namespace tierflow
