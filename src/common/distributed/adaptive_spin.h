// AdaptiveSpin: whether a waiter spins before it sleeps, learnt from the
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
// So each waiter keeps a score of how its recent spins went: a wait that
// ends while spinning raises it by two (up to kTrust), a wait that had to
// sleep lowers it by one. A waiter spins its full length while the score is
// positive — that is, while at least about one spin in three pays — and not
// at all once it is zero, except that one in kProbeEvery of those waits
// spins anyway, so a waiter whose traffic turns into short hand-offs learns
// to spin again. A busy pipeline that now and then misses a hand-off (its
// producer was descheduled) keeps spinning; a worker whose next request is
// always queued behind other processes stops after a few requests.
//
// Owned by one waiter. The score is a relaxed atomic only so that several
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
// A child's wait for its next request spins four times longer (~60 us):
// inside a next-level chain, its next request comes only after a round trip
// through the level above.
constexpr uint32_t kChildSpins = 2048;

class AdaptiveSpin {
 public:
  // `max_spins`: the length of a spin (cpu_relax rounds; 0 never spins).
  explicit AdaptiveSpin(uint32_t max_spins) : max_(max_spins) {}

  // Spins while !ready(), up to max_spins rounds if the score allows; true
  // when ready() held, false when the caller must sleep.
  template <class Ready>
  bool spin(Ready&& ready) {
    uint32_t score = score_.load(std::memory_order_relaxed);
    uint32_t n = score > 0 || probe_.fetch_add(1, std::memory_order_relaxed) % kProbeEvery == kProbeEvery - 1 ? max_ : 0;
    for (uint32_t i = 0; i < n; ++i) {
      if (ready()) {
        score_.store(std::min(kTrust, score + 2), std::memory_order_relaxed);
        return true;
      }
      // Past a typical hand-off, give the core to a runnable thread now and
      // then: with more busy threads than cores, the one this waiter waits
      // for may be queued behind it. Not sooner: a spinner that yields
      // before its hand-off arrives loses the core for a whole time slice
      // to whoever it let in.
      if (i >= kFirstYield && (i & kYieldMask) == kYieldMask)
        sched_yield();
      else
        cpu_relax();
    }
    if (ready()) return true;
    if (n != 0 && score > 0) score_.store(score - 1, std::memory_order_relaxed);
    return false;
  }

  // Whether the next wait spins (the probes aside).
  bool spinning() const { return max_ != 0 && score_.load(std::memory_order_relaxed) > 0; }
  uint32_t score() const { return score_.load(std::memory_order_relaxed); }

  static constexpr uint32_t kTrust = 8;
  static constexpr uint32_t kProbeEvery = 64;

 private:
  static constexpr uint32_t kFirstYield = 255;  // ~8 us of spinning
  static constexpr uint32_t kYieldMask = 63;    // then a yield every ~2 us
  const uint32_t max_;
  std::atomic<uint32_t> score_{kTrust};
  std::atomic<uint32_t> probe_{0};  // waits made with a zero score
};

}  // namespace tierflow
