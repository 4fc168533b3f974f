// AdaptiveSpin: waits that keep having to sleep stop spinning (and probe now
// and then); waits that end while spinning keep it going; a real hand-off
// between threads sharing one spinner is race-free (TSan build).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/distributed/adaptive_spin.h"

using tierflow::AdaptiveSpin;

namespace {
// A wait that never ends while spinning; returns how often it looked.
int failing_wait(AdaptiveSpin& s) {
  int calls = 0;
  EXPECT_FALSE(s.spin([&] { return ++calls < 0; }));
  return calls;
}
}  // namespace

TEST(AdaptiveSpin, AWaitThatIsReadyAtOnceKeepsFullTrust) {
  AdaptiveSpin s(512);
  int calls = 0;
  EXPECT_TRUE(s.spin([&] { return ++calls > 0; }));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(s.score(), AdaptiveSpin::kTrust);
}

TEST(AdaptiveSpin, WaitsThatKeepSleepingStopSpinning) {
  AdaptiveSpin s(512);
  for (uint32_t round = 0; round < AdaptiveSpin::kTrust; ++round) {
    EXPECT_TRUE(s.spinning());
    EXPECT_EQ(failing_wait(s), 513) << "round " << round;  // its full length, then once more
  }
  EXPECT_FALSE(s.spinning());
  EXPECT_EQ(failing_wait(s), 1);  // from now on a wait looks once
}

TEST(AdaptiveSpin, OneWaitInSixtyFourProbesAndAPayingProbeRestoresSpinning) {
  AdaptiveSpin s(256);
  while (s.spinning()) failing_wait(s);
  int probes = 0;
  for (uint32_t i = 0; i < 3 * AdaptiveSpin::kProbeEvery; ++i) {
    int calls = failing_wait(s);
    if (calls > 1) {
      ++probes;
      EXPECT_EQ(calls, 257);
    }
    EXPECT_FALSE(s.spinning());  // a probe that does not pay changes nothing
  }
  EXPECT_EQ(probes, 3);
  // A probe whose wait ends on its 40th look: the next waits spin again.
  for (;;) {
    int calls = 0;
    bool ok = s.spin([&] { return ++calls >= 40; });
    if (calls > 1) {
      EXPECT_TRUE(ok);
      break;
    }
  }
  EXPECT_TRUE(s.spinning());
  EXPECT_EQ(failing_wait(s), 257);
}

TEST(AdaptiveSpin, OneSpinInThreeThatPaysKeepsSpinningOneInFourDoesNot) {
  auto run = [](int period) {
    AdaptiveSpin s(64);
    for (int i = 0; i < 40 * period; ++i) {
      if (i % period == 0) {
        int calls = 0;
        s.spin([&] { return ++calls >= 10; });  // pays, when it spins at all
      } else {
        failing_wait(s);
      }
    }
    return s.spinning();
  };
  EXPECT_TRUE(run(1));
  EXPECT_TRUE(run(2));
  EXPECT_TRUE(run(3));
  EXPECT_FALSE(run(4));
}

TEST(AdaptiveSpin, ZeroMaximumNeverSpins) {
  AdaptiveSpin s(0);
  for (int i = 0; i < 200; ++i) {
    int calls = 0;
    EXPECT_FALSE(s.spin([&] { return ++calls < 0; }));
    EXPECT_EQ(calls, 1);
  }
}

// Threads ping-pong through one atomic, each waiting with the spinner they
// share and falling back to a yield loop: every hand-off arrives, at several
// thread counts.
TEST(AdaptiveSpin, SharedBySeveralWaitersOfOneHandOff) {
  for (int pairs : {1, 2, 4}) {
    AdaptiveSpin shared(512);
    std::vector<std::thread> threads;
    std::atomic<int> done{0};
    constexpr int kRounds = 2000;
    std::vector<std::atomic<int>> turn(pairs);
    for (auto& t : turn) t.store(0);
    for (int p = 0; p < pairs; ++p) {
      for (int side = 0; side < 2; ++side) {
        threads.emplace_back([&, p, side] {
          for (int r = 0; r < kRounds; ++r) {
            int want = 2 * r + side;
            if (!shared.spin([&] { return turn[p].load(std::memory_order_acquire) == want; }))
              while (turn[p].load(std::memory_order_acquire) != want) std::this_thread::yield();
            turn[p].store(want + 1, std::memory_order_release);
          }
          done.fetch_add(1);
        });
      }
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(done.load(), 2 * pairs);
    for (auto& t : turn) EXPECT_EQ(t.load(), 2 * kRounds);
    EXPECT_LE(shared.score(), AdaptiveSpin::kTrust);
  }
}
