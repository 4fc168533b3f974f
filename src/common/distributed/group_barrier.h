// GroupBarrier: the barrier the members of one group task meet at, in shared
// memory so chip processes can use it. The scheduler arms it before it
// dispatches a group and breaks it when a member fails or dies, so no member
// waits forever for a peer that will not come.
//
// `generation` is the futex word: a completed round or a break bumps it.
#pragma once
#include <atomic>
#include <cstdint>

namespace tierflow {

struct GroupBarrier {
  std::atomic<uint32_t> generation{0};
  std::atomic<uint32_t> arrived{0};
  std::atomic<uint32_t> size{0};
  std::atomic<uint32_t> broken{0};

  void arm(uint32_t members);
  // Returns false if the barrier is (or becomes) broken.
  bool wait();
  void break_it();
};

}  // namespace tierflow
