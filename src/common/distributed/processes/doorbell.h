// Doorbell: the scheduler's single wait point, an eventcount on one futex word.
//
// Anyone with news (a submit, a child's completion, a death notice, shutdown)
// calls ring(). The scheduler takes a ticket with prepare(), looks for work,
// and calls wait(ticket) only if it found none; a ring() between prepare() and
// wait() changes the sequence, so the futex wait returns at once: no lost
// wake-up. The word lives in shared memory so children ring it directly.
//
// Ordering: ring() increments `seq` then reads `sleeping`; wait() sets
// `sleeping` then re-reads `seq`. Both pairs are seq_cst, so at least one side
// sees the other's write: either the ringer wakes the sleeper or the sleeper
// sees the new sequence and does not sleep.
#pragma once
#include <atomic>
#include <cstdint>

#include "common/distributed/adaptive_spin.h"
#include "common/distributed/processes/futex.h"

namespace tierflow {

struct Doorbell {
  std::atomic<uint32_t> seq{0};
  std::atomic<uint32_t> sleeping{0};

  uint32_t prepare() const { return seq.load(std::memory_order_seq_cst); }

  void ring() {
    seq.fetch_add(1, std::memory_order_seq_cst);
    if (sleeping.load(std::memory_order_seq_cst) != 0) futex_wake_all(&seq);
  }

  // Single waiter only (the scheduler thread). Spins first if given a
  // `spin` (a hop whose completion arrives within the spin costs no futex
  // wake), then sleeps at most `timeout_ns` (< 0: no limit), so a deadline is
  // never missed.
  void wait(uint32_t ticket, AdaptiveSpin* spin = nullptr, int64_t timeout_ns = -1) {
    if (spin != nullptr && spin->spin([&] { return seq.load(std::memory_order_acquire) != ticket; })) return;
    sleeping.store(1, std::memory_order_seq_cst);
    if (timeout_ns >= 0) {
      if (seq.load(std::memory_order_seq_cst) == ticket) futex_wait(&seq, ticket, timeout_ns);
    } else {
      while (seq.load(std::memory_order_seq_cst) == ticket) futex_wait(&seq, ticket);
    }
    sleeping.store(0, std::memory_order_relaxed);
  }
};

}  // namespace tierflow
