// Ring: back-pressure and slot uniqueness.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/distributed/ring.h"

using namespace tierflow;

TEST(Ring, HandsOutEverySlotOnceThenRefuses) {
  Ring ring(4);
  std::vector<SlotIndex> got;
  SlotIndex s;
  while (ring.try_acquire(&s)) got.push_back(s);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<SlotIndex>{0, 1, 2, 3}));
  EXPECT_EQ(ring.in_use(), 4u);
  ring.release(2);
  ASSERT_TRUE(ring.try_acquire(&s));
  EXPECT_EQ(s, 2u);
}

TEST(Ring, AcquireBlocksUntilAnotherThreadReleases) {
  Ring ring(1);
  SlotIndex s;
  ASSERT_TRUE(ring.try_acquire(&s));
  std::atomic<bool> released{false};
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    released = true;
    ring.release(s);
  });
  SlotIndex again = ring.acquire({}, std::chrono::milliseconds(10));
  EXPECT_TRUE(released.load());
  EXPECT_EQ(again, s);
  t.join();
}

TEST(Ring, WaitHookRunsWhileBlockedAndCanAbandonTheWait) {
  Ring ring(1);
  SlotIndex s;
  ASSERT_TRUE(ring.try_acquire(&s));
  int calls = 0;
  EXPECT_THROW(ring.acquire(
                   [&] {
                     if (++calls == 3) throw std::runtime_error("interrupted");
                   },
                   std::chrono::milliseconds(1)),
               std::runtime_error);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(ring.in_use(), 1u);  // nothing was taken
}

TEST(Ring, TenThousandTasksReleasedInRandomOrderThroughWindowEight) {
  Ring ring(8);
  std::vector<std::atomic<int>> held(8);
  std::atomic<long> done{0};
  std::atomic<bool> duplicate{false};
  constexpr long kTasks = 10000;
  std::vector<std::thread> releasers;
  std::mutex mu;
  std::vector<SlotIndex> live;
  std::thread producer([&] {
    for (long i = 0; i < kTasks; ++i) {
      SlotIndex s = ring.acquire({}, std::chrono::milliseconds(5));
      if (held[s].fetch_add(1) != 0) duplicate = true;
      std::lock_guard<std::mutex> lock(mu);
      live.push_back(s);
    }
  });
  std::thread consumer([&] {
    std::mt19937 rng(7);
    while (done.load() < kTasks) {
      SlotIndex s;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (live.empty()) continue;
        size_t k = rng() % live.size();  // random order
        s = live[k];
        live.erase(live.begin() + static_cast<long>(k));
      }
      held[s].fetch_sub(1);
      ring.release(s);
      done.fetch_add(1);
    }
  });
  producer.join();
  consumer.join();
  EXPECT_FALSE(duplicate.load());
  EXPECT_EQ(ring.in_use(), 0u);
}

TEST(Ring, RejectsAnEmptyWindow) { EXPECT_THROW(Ring(0), std::invalid_argument); }
