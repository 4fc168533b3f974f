#include "common/distributed/processes/drain_reply.h"

#include <memory>

#include "common/distributed/adaptive_spin.h"
#include "common/distributed/processes/futex.h"

namespace tierflow {

namespace {
enum : uint32_t { kArmed = 0, kAnswered = 1, kLeftToCaller = 2 };

// What the waiting thread and the draining one share. Owned by both: the
// drainer still wakes the word after the waiter may have returned.
struct Verdict {
  std::atomic<uint32_t> word{kArmed};
  std::atomic<uint32_t> sleeping{0};
  void decide(uint32_t v) {
    word.store(v, std::memory_order_seq_cst);
    if (sleeping.load(std::memory_order_seq_cst) != 0) futex_wake(&word, 1);
  }
};

// The serving thread's wait is shared by its requests: it learns whether
// answers come back within a spin.
thread_local AdaptiveSpin t_spin{kWaitSpins};
}  // namespace

bool answer_when_drained(ChildPort& port, Session& session, LentMemory& lent, std::string value) {
  auto verdict = std::make_shared<Verdict>();
  session.when_drained([verdict, &port, &session, &lent, value = std::move(value)]() mutable {
    if (session.has_unreported_failures()) {
      verdict->decide(kLeftToCaller);
      return;
    }
    // The loan ends before the parent hears back: once it has, the lent
    // bytes are its own again.
    lent.end_loan();
    TaskResult r;
    r.value = std::move(value);
    port.complete(r);
    verdict->decide(kAnswered);
  });
  uint32_t v = verdict->word.load(std::memory_order_acquire);
  if (v == kArmed) {
    t_spin.spin([&] {
      v = verdict->word.load(std::memory_order_acquire);
      return v != kArmed;
    });
  }
  while (v == kArmed) {
    verdict->sleeping.store(1, std::memory_order_seq_cst);
    if (verdict->word.load(std::memory_order_seq_cst) == kArmed) futex_wait(&verdict->word, kArmed);
    verdict->sleeping.store(0, std::memory_order_relaxed);
    v = verdict->word.load(std::memory_order_acquire);
  }
  return v == kAnswered;
}

}  // namespace tierflow
