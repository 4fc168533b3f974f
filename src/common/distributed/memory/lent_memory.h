// LentMemory: the memory of the levels above that one of their tasks lends
// to this level while it runs.
//
// A level-4 task that runs an orch function on a level-3 Worker names
// tensors of the level-4 arena; the level-3 process and its children map
// that arena at the same address (it was mapped before they were forked),
// so the level-3 Worker can run its own tasks on those bytes without a copy.
// It does not own them: the level above holds their references for as long
// as its task runs, and its task runs until everything the orch function
// submitted has finished. So a lent view is tracked here, not retained in an
// Arena, and only for the duration of the loan.
//
// Spaces: 1 is the arena one level up, 2 the one above it, and so on. A
// tensor of space k is described by offsets from that arena's base. Every
// lent allocation gets a generation of its own (high bit set, never one an
// Arena hands out), distinct per loan: bytes lent again by a later task are
// a new allocation to dependency tracking, so nothing of an earlier loan
// (entries, tombstones of failed tasks) reaches a later one.
//
// Thread-safe: orch functions may submit from several threads.
#pragma once
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "common/distributed/graph/tensor_desc.h"
#include "common/distributed/memory/arena.h"

namespace tierflow {

struct LentView {
  uint8_t space;   // 1..kMaxSpaces-1
  uint64_t block;  // the allocation's offset in that space (shared by views of one allocation)
  uint64_t lo, hi; // the view's byte range in that space
};

class LentMemory {
 public:
  static constexpr uint64_t kLentGen = 1ull << 63;

  // The arenas above this level, nearest first: (base, size) of space 1, 2, ...
  void set_ancestors(std::vector<std::pair<const char*, uint64_t>> arenas);
  // The space whose arena holds the absolute range [lo, hi), or 0 if none
  // does; and that arena's base.
  int space_of(uint64_t lo, uint64_t hi) const;
  uint64_t base_of(int space) const;
  size_t num_ancestors() const;

  // Starts a loan (replacing the previous one).
  void lend(const std::vector<LentView>& views);
  void end_loan();
  // True while `gen` names an allocation of the current loan.
  bool in_loan(uint64_t gen) const;
  // The lent allocation holding [lo, hi) of `space`; throws
  // std::invalid_argument when no view of the current loan covers it.
  BlockRef block_of(uint8_t space, uint64_t lo, uint64_t hi) const;

 private:
  struct Entry {
    LentView view;
    uint64_t gen;
  };
  mutable std::mutex mu_;
  std::vector<std::pair<const char*, uint64_t>> ancestors_;
  std::vector<Entry> loan_;
  uint64_t epoch_ = 0;
};

}  // namespace tierflow
