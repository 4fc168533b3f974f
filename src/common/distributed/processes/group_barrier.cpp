#include "common/distributed/processes/group_barrier.h"

#include "common/distributed/adaptive_spin.h"
#include "common/distributed/processes/futex.h"

namespace tierflow {

void GroupBarrier::arm(uint32_t members) {
  arrived.store(0, std::memory_order_relaxed);
  size.store(members, std::memory_order_relaxed);
  // The next even value: a fresh, unbroken barrier. Published to the members
  // by the mailbox post (release) that follows.
  uint32_t g = generation.load(std::memory_order_relaxed);
  generation.store((g | 1u) + 1u, std::memory_order_relaxed);
}

bool GroupBarrier::wait() {
  uint32_t g = generation.load(std::memory_order_acquire);
  if (g & 1u) return false;
  uint32_t n = arrived.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (n == size.load(std::memory_order_relaxed)) {
    // Last to arrive: reset for the next round, then complete this one —
    // unless a break got there first.
    arrived.store(0, std::memory_order_relaxed);
    bool completed = generation.compare_exchange_strong(g, g + 2, std::memory_order_acq_rel);
    futex_wake_all(&generation);
    return completed;
  }
  uint32_t now = generation.load(std::memory_order_acquire);
  for (int spin = 0; spin < 4000 && now == g; ++spin) {
    cpu_relax();
    now = generation.load(std::memory_order_acquire);
  }
  while (now == g) {
    futex_wait(&generation, g);
    now = generation.load(std::memory_order_acquire);
  }
  return now - g != 1u;
}

void GroupBarrier::break_it() {
  uint32_t g = generation.load(std::memory_order_acquire);
  while (!(g & 1u)) {
    if (generation.compare_exchange_weak(g, g + 1, std::memory_order_acq_rel)) break;
  }
  futex_wake_all(&generation);
}

}  // namespace tierflow
