// TensorMap: which live tasks wrote or read which bytes of which allocation.
//
// Dependency inference in one place. For a new access of allocation A the map
// returns every earlier entry it conflicts with:
//   read  after write  (RAW): a reader depends on overlapping writers;
//   write after read   (WAR): a writer depends on overlapping readers;
//   write after write  (WAW): a writer depends on overlapping writers.
// Two reads never conflict; footprints that share no byte never conflict,
// however their spans interleave (overlaps() is exact for regular views).
//
// A write prunes what it makes redundant: an entry of another task it covers
// completely is removed, and a write entry or tombstone it overlaps partially
// is cut down to the bytes the write leaves (subtract()), when that is exact.
// The writer already depends on those tasks, so a later access to the
// overwritten bytes is ordered after them through the writer; and a failure of
// theirs no longer reaches a reader of bytes they did not produce. Read
// entries that are overwritten only in part stay whole (ordering only).
//
// Index: per allocation, buckets.
//   Bucket 0 holds dense and irregular footprints keyed by `base`, with the
//   longest span ever inserted: a query visits keys in [lo - max_len, hi).
//   Bucket M holds strided footprints whose strides are all multiples of the
//   smallest one, M, keyed by the column `base % M`, with the longest run ever
//   inserted: a query whose own columns mod M are known visits only the keys
//   in the circular range (qcol - max_run, qcol + qrun); any other query scans
//   the bucket with a span pre-check.
// Every candidate is then checked with the exact overlaps(). The pieces a
// split leaves stay in the bucket and under the key of the access that
// created the entry (a superset of the piece for the index's filters), so
// retire() and entomb() find all pieces from the original footprint.
//
// Each bucket keeps its writing entries (tombstones included) apart from its
// read-only ones, both ordered by (key, task): a read visits only writers, so
// a tensor read by every task of the window costs each new reader nothing
// for the readers before it, and retire() goes straight to its task's
// pieces instead of walking every entry under the same key.
//
// Not thread-safe by itself; the caller holds one mutex around lookup +
// insert and around retire/entomb/forget.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

#include "common/distributed/graph/footprint.h"
#include "common/distributed/graph/task_id.h"

namespace tierflow {

// A conflicting earlier access: a live task (slot, task), or the tombstone
// of a failed task that is already consumed (slot == kTombstone, `task` is
// the root failure to propagate).
constexpr SlotIndex kTombstone = 0xffffffffu;

struct TensorMapHit {
  SlotIndex slot;  // the earlier task's slot, or kTombstone
  TaskId task;     // that task, or for a tombstone the root failure it carries
  bool carries;    // the new access reads bytes this entry's task wrote (and no later write overwrote):
                   // a failure of that task must reach the new task; false = ordering only
};

class TensorMap {
 public:
  // Appends every earlier entry that conflicts with this access of allocation `alloc`
  // (alloc is an allocation id, never reused). Conflict: the bytes overlap (exactly, see
  // overlaps()) and at least one side writes. Tombstones are reported only when `carries`
  // (a write-only access is not ordered after a consumed task). May report a task more than once.
  void lookup(uint64_t alloc, const Footprint& fp, bool reads, bool writes, std::vector<TensorMapHit>* out) const;
  // Records the access for (slot, task). Call after lookup() for all of a task's tensors, so a
  // task never depends on itself. A write removes every entry of OTHER tasks (tombstones included)
  // that it covers completely, and replaces write entries and tombstones of other tasks that it
  // overlaps partially by the remainder (subtract()) when that is exact; otherwise keeps them whole
  // (conservative). Read entries that are partially overwritten are kept whole. Empty footprints are ignored.
  void insert(uint64_t alloc, const Footprint& fp, bool reads, bool writes, SlotIndex slot, TaskId task);
  // Removes every live entry (all pieces) that insert(alloc, fp, ..., task) created, if still present.
  void retire(uint64_t alloc, const Footprint& fp, TaskId task);
  // The task failed and is being consumed: its write pieces for this access become tombstones
  // carrying `root`; its read-only pieces are removed (a failed reader poisons nothing).
  void entomb(uint64_t alloc, const Footprint& fp, TaskId task, TaskId root);
  // The allocation was freed: drops every entry and tombstone of it.
  void forget(uint64_t alloc);
  // Allocations that hold at least one tombstone (the caller sweeps freed ones with forget()).
  std::vector<uint64_t> allocs_with_tombstones() const;
  size_t size() const;  // entries (pieces and tombstones), for tests and stats
  size_t tombstones() const;

 private:
  struct Entry {
    Footprint fp;  // the bytes this piece still stands for
    SlotIndex slot;
    TaskId task;   // the task that made the access (kept when entombed)
    TaskId root;   // for a tombstone, the root failure it carries
    bool reads;
    bool writes;
    bool tomb() const { return slot == kTombstone; }
  };
  // Ordered by the index key, then the task (release() finds a task's pieces).
  struct Key {
    uint64_t key;
    TaskId task;
    bool operator<(const Key& o) const { return key < o.key || (key == o.key && task < o.task); }
  };
  using Index = std::multimap<Key, Entry>;
  struct Bucket {
    uint64_t modulus = 0;  // 0: dense and irregular footprints, keyed by base
    uint64_t max_ext = 0;  // longest span (modulus 0) or run (modulus M) ever inserted
    Index writers;         // entries that write, and tombstones
    Index readers;         // read-only entries
    Index& of(const Entry& e) { return e.writes ? writers : readers; }
  };
  struct Alloc {
    std::vector<Bucket> buckets;  // few: one per distinct modulus in use
    size_t entries = 0;
    size_t tombstones = 0;
  };
  using Iter = Index::iterator;

  // Calls f(bucket, iterator) for every entry of `al` the index cannot rule
  // out for fp and whose span meets fp's — writers only, or read-only
  // entries too (`with_readers`); the caller applies overlaps().
  template <class A, class F>
  static void for_each_candidate(A& al, const Footprint& fp, bool with_readers, F&& f);
  void erase(Alloc& al, Bucket& b, Iter it);
  // retire() (root == kNoTask) and entomb(): the live pieces of (alloc, fp, task).
  void release(uint64_t alloc, const Footprint& fp, TaskId task, TaskId root);

  std::unordered_map<uint64_t, Alloc> allocs_;
  size_t entries_ = 0;
  size_t tombstones_ = 0;
};

}  // namespace tierflow
