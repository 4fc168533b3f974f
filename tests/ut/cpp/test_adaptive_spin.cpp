// AdaptiveSpin: waits that keep having to sleep stop spinning (and probe now
// and then); waits that end while spinning keep their budget; a real
// hand-off between threads sharing one spinner is race-free (TSan build).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/distributed/adaptive_spin.h"

using tierflow::AdaptiveSpin;

TEST(AdaptiveSpin, AWaitThatIsReadyAtOnceKeepsTheBudget) {
  AdaptiveSpin s(512);
  int calls = 0;
  EXPECT_TRUE(s.spin([&] { return ++calls > 0; }));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(s.budget(), 512u);
}

TEST(AdaptiveSpin, WaitsThatSleepHalveTheBudgetDownToNoSpinAtAll) {
  AdaptiveSpin s(512);
  uint32_t expected = 512;
  for (int round = 0; round < 10; ++round) {
    int calls = 0;
    EXPECT_FALSE(s.spin([&] { return ++calls < 0; }));
    EXPECT_EQ(calls, static_cast<int>(expected) + 1) << "round " << round;  // every round, then once more
    expected /= 2;
    EXPECT_EQ(s.budget(), expected);
  }
  EXPECT_EQ(s.budget(), 0u);
  // From now on a wait only looks once ...
  int calls = 0;
  EXPECT_FALSE(s.spin([&] { return ++calls < 0; }));
  EXPECT_EQ(calls, 1);
}

TEST(AdaptiveSpin, OneWaitInSixtyFourProbesAtFullLengthAndASuccessRestoresTheBudget) {
  AdaptiveSpin s(256);
  while (s.budget() != 0) s.spin([] { return false; });
  int probes = 0;
  for (int i = 0; i < 64 * 3; ++i) {
    int calls = 0;
    s.spin([&] { return ++calls < 0; });
    if (calls > 1) {
      ++probes;
      EXPECT_EQ(calls, 257);
      EXPECT_EQ(s.budget(), 128u);  // the failed probe halved its full length ...
      while (s.budget() != 0) s.spin([] { return false; });  // ... back to none
    }
  }
  EXPECT_EQ(probes, 3);
  // A probe whose wait ends on its 40th look restores a budget of at least
  // twice that.
  for (;;) {
    int calls = 0;
    bool ok = s.spin([&] { return ++calls >= 40; });
    if (calls > 1) {
      EXPECT_TRUE(ok);
      break;
    }
  }
  EXPECT_GE(s.budget(), 2u * 39u);
  EXPECT_LE(s.budget(), 256u);
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
    EXPECT_LE(shared.budget(), 512u);
  }
}
