// GroupBarrier: where the members of one group task meet, in shared memory so
// chip processes can use it.
//
// `generation` is the futex word and says everything: an even value is a
// barrier in use, an odd value a broken one. A completed round moves it from
// g to g + 2; breaking moves it from even g to g + 1 and it stays broken until
// the next arm(). A member that waited in round g therefore knows how the
// round ended from the value it wakes to: g + 1 means broken before the round
// completed; g + 2 (or g + 3, broken after completing) means it completed.
//
// The barrier breaks when a member fails, dies or simply returns while the
// others may still call barrier(): a round needs every member, so once one has
// left no later round can complete, and waiting members get false at once
// instead of hanging.
#pragma once
#include <atomic>
#include <cstdint>

namespace tierflow {

struct GroupBarrier {
  std::atomic<uint32_t> generation{0};
  std::atomic<uint32_t> arrived{0};
  std::atomic<uint32_t> size{0};

  // Before a group is dispatched (no member of an earlier group can still
  // touch it: its chips stay reserved until every member returned).
  void arm(uint32_t members);
  // Returns false if the barrier is (or becomes) broken before this round completes.
  bool wait();
  // Breaks the barrier unless already broken; a completed round stays completed.
  void break_it();
  bool broken() const { return (generation.load(std::memory_order_acquire) & 1u) != 0; }
};

}  // namespace tierflow
