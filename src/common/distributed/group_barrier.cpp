#include "common/distributed/group_barrier.h"

#include "common/distributed/futex.h"

namespace tierflow {

void GroupBarrier::arm(uint32_t members) {
  arrived.store(0, std::memory_order_relaxed);
  size.store(members, std::memory_order_relaxed);
  broken.store(0, std::memory_order_relaxed);
  // Published to the members by the mailbox post (release) that follows.
}

bool GroupBarrier::wait() {
  uint32_t gen = generation.load(std::memory_order_acquire);
  if (broken.load(std::memory_order_acquire) != 0) return false;
  uint32_t n = arrived.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (n == size.load(std::memory_order_relaxed)) {
    arrived.store(0, std::memory_order_relaxed);
    generation.fetch_add(1, std::memory_order_acq_rel);
    futex_wake_all(&generation);
    return broken.load(std::memory_order_acquire) == 0;
  }
  for (int spin = 0; spin < 4000; ++spin) {
    if (generation.load(std::memory_order_acquire) != gen) return broken.load(std::memory_order_acquire) == 0;
    cpu_relax();
  }
  while (generation.load(std::memory_order_acquire) == gen) futex_wait(&generation, gen);
  return broken.load(std::memory_order_acquire) == 0;
}

void GroupBarrier::break_it() {
  broken.store(1, std::memory_order_release);
  generation.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(&generation);
}

}  // namespace tierflow
