// AdaptiveSpin: how long a waiter spins before it sleeps, learnt from the
// waits it has seen.
//
// A hand-off between two threads or processes costs a futex sleep and wake
// (5-15 us on a VM) unless the waiter is still spinning when the other side
// arrives. Spinning pays when the other side answers within the spin (a chain
// of short tasks: the next request lands a few microseconds after the last
// reply) and is pure loss when it does not (a worker in a fan-out whose next
// request is queued behind other processes): on a machine with fewer cores
// than busy threads every lost spin is taken from a thread with work to do.
// Measured on 2 cores, a fixed spin burnt a third of a level-3 process's CPU
// in a level-4 fan-out.
//
// So each waiter keeps a budget: a wait that ends while spinning keeps it at
// least twice what that wait needed; a wait that had to sleep halves it.
// Waits that keep sleeping therefore stop spinning after a few rounds, and
// one in kProbeEvery of the waits that no longer spin spins its
// full length anyway, so a waiter whose traffic
// turns into short hand-offs learns to spin again.
//
// Owned by one waiter. The budget is a relaxed atomic only so that several
// threads waiting on the same thing (two drains of one session) may share
// it: they race on a heuristic, never on data.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

#include <sched.h>

namespace tierflow {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// The longest spin of the engine's waits: 512 rounds, 15-20 us on the x86
// machines measured (a pause is ~30 ns there), about one futex sleep and
// wake-up on a VM.
constexpr uint32_t kWaitSpins = 512;

class AdaptiveSpin {
 public:
  // `max_spins`: the most a wait spins (cpu_relax rounds; 0 never spins).
  explicit AdaptiveSpin(uint32_t max_spins) : max_(max_spins), budget_(max_spins) {}

  // Spins while !ready(), up to the budget; true when ready() held, false
  // when the caller must sleep (the budget is halved then).
  template <class Ready>
  bool spin(Ready&& ready) {
    uint32_t b = budget_.load(std::memory_order_relaxed);
    if (b == 0 && probe_.fetch_add(1, std::memory_order_relaxed) % kProbeEvery == kProbeEvery - 1) b = max_;
    for (uint32_t i = 0; i < b; ++i) {
      if (ready()) {
        budget_.store(std::min(max_, std::max(b, 2 * i + kMinBudget)), std::memory_order_relaxed);
        return true;
      }
      // Now and then give the core to a runnable thread: with more busy
      // threads than cores, the one this waiter waits for may be queued
      // behind it.
      if ((i & kYieldMask) == kYieldMask)
        sched_yield();
      else
        cpu_relax();
    }
    if (ready()) return true;
    budget_.store(b / 2, std::memory_order_relaxed);
    return false;
  }

  uint32_t budget() const { return budget_.load(std::memory_order_relaxed); }
  uint32_t max_spins() const { return max_; }

 private:
  static constexpr uint32_t kProbeEvery = 64;
  static constexpr uint32_t kMinBudget = 64;
  static constexpr uint32_t kYieldMask = 63;
  const uint32_t max_;
  std::atomic<uint32_t> budget_;
  std::atomic<uint32_t> probe_{0};  // waits made with no budget
};

}  // namespace tierflow
