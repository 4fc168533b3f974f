// Ring: slot allocation with back-pressure.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/distributed/graph/ring.h"

using namespace tierflow;
using namespace std::chrono_literals;

namespace {

struct Abandon : std::runtime_error {
  Abandon() : std::runtime_error("abandon") {}
};

// Waits (bounded) for `cond`.
template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 10s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST(Ring, ZeroWindowRejected) { EXPECT_THROW(Ring(0), std::invalid_argument); }

TEST(Ring, TryAcquireHandsOutEverySlotOnceThenFails) {
  Ring r(4);
  std::set<SlotIndex> got;
  for (int i = 0; i < 4; ++i) {
    SlotIndex s = 99;
    ASSERT_TRUE(r.try_acquire(0, &s));
    EXPECT_LT(s, 4u);
    EXPECT_TRUE(got.insert(s).second) << "slot " << s << " handed out twice";
  }
  EXPECT_EQ(r.in_use(), 4u);
  SlotIndex s = 77;
  EXPECT_FALSE(r.try_acquire(0, &s));
  EXPECT_EQ(s, 77u) << "a failed try_acquire must not write the slot";
  r.release(0, 2);
  EXPECT_EQ(r.in_use(), 3u);
  ASSERT_TRUE(r.try_acquire(0, &s));
  EXPECT_EQ(s, 2u);
}

TEST(Ring, AcquireBlocksWhileFullAndReturnsAfterReleaseFromAnotherThread) {
  Ring r(2);
  SlotIndex a, b;
  ASSERT_TRUE(r.try_acquire(0, &a));
  ASSERT_TRUE(r.try_acquire(0, &b));

  std::atomic<int> waits{0};
  std::atomic<bool> returned{false};
  std::atomic<SlotIndex> got{1000};
  std::thread t([&] {
    got = r.acquire(0, [&] { waits.fetch_add(1); }, 5ms);
    returned = true;
  });
  // The hook runs while blocked: proof the thread is inside acquire().
  ASSERT_TRUE(eventually([&] { return waits.load() >= 3; }));
  EXPECT_FALSE(returned.load()) << "acquire returned although the ring is full";
  EXPECT_EQ(r.in_use(), 2u);

  r.release(0, b);
  ASSERT_TRUE(eventually([&] { return returned.load(); }));
  t.join();
  EXPECT_EQ(got.load(), b);
  EXPECT_EQ(r.in_use(), 2u);
}

TEST(Ring, ReleaseWakesWaiterWithoutWaitingForTheSlice) {
  // With a one-minute slice only the notify can wake the waiter in time.
  Ring r(1);
  SlotIndex a;
  ASSERT_TRUE(r.try_acquire(0, &a));
  std::atomic<bool> returned{false};
  std::thread t([&] {
    SlotIndex s = r.acquire(0, {}, std::chrono::minutes(1));
    EXPECT_EQ(s, a);
    returned = true;
  });
  std::this_thread::sleep_for(50ms);  // let it block (not required for correctness)
  EXPECT_FALSE(returned.load());
  auto t0 = std::chrono::steady_clock::now();
  r.release(0, a);
  ASSERT_TRUE(eventually([&] { return returned.load(); }, 20s));
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
}

TEST(Ring, OnWaitThrowAbandonsTheWaitAndLeavesRingUnchanged) {
  Ring r(1);
  SlotIndex a;
  ASSERT_TRUE(r.try_acquire(0, &a));
  int calls = 0;
  EXPECT_THROW(r.acquire(0,
                   [&] {
                     if (++calls == 3) throw Abandon();
                   },
                   1ms),
               Abandon);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r.in_use(), 1u);
  SlotIndex s;
  EXPECT_FALSE(r.try_acquire(0, &s));
  // The abandoned waiter left nothing behind: release/acquire still work.
  r.release(0, a);
  EXPECT_EQ(r.in_use(), 0u);
  EXPECT_EQ(r.acquire(0, {}, 1ms), a);
  EXPECT_EQ(r.in_use(), 1u);
}

TEST(Ring, OnWaitIsNotCalledWhenASlotIsFree) {
  Ring r(3);
  int calls = 0;
  for (int i = 0; i < 3; ++i) r.acquire(0, [&] { ++calls; }, 1ms);
  EXPECT_EQ(calls, 0);
}

TEST(Ring, ManyWaitersAreAllServedByReleases) {
  constexpr int kWaiters = 4;
  Ring r(kWaiters);
  std::vector<SlotIndex> held(kWaiters);
  for (auto& s : held) ASSERT_TRUE(r.try_acquire(0, &s));
  std::atomic<int> done{0};
  std::vector<SlotIndex> got(kWaiters, 1000);
  std::vector<std::thread> ts;
  for (int i = 0; i < kWaiters; ++i)
    ts.emplace_back([&, i] {
      got[i] = r.acquire(0, {}, std::chrono::minutes(1));
      done.fetch_add(1);
    });
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(done.load(), 0);
  for (SlotIndex s : held) r.release(0, s);
  // One-minute slices: a lost notify would leave a waiter stuck here.
  ASSERT_TRUE(eventually([&] { return done.load() == kWaiters; }, 20s)) << "a waiter missed its wake-up";
  for (auto& t : ts) t.join();
  std::sort(got.begin(), got.end());
  std::sort(held.begin(), held.end());
  EXPECT_EQ(got, held);
  EXPECT_EQ(r.in_use(), static_cast<uint32_t>(kWaiters));
}

TEST(Ring, TenThousandTasksRandomOrderNeverShareASlot) {
  constexpr uint32_t kWindow = 8;
  constexpr int kTasks = 10000;
  Ring r(kWindow);
  std::mt19937 rng(1234);
  std::vector<SlotIndex> held;
  std::vector<bool> busy(kWindow, false);
  int acquired = 0;
  while (acquired < kTasks || !held.empty()) {
    bool take = acquired < kTasks && (held.empty() || (held.size() < kWindow && rng() % 2 == 0));
    if (take) {
      SlotIndex s;
      ASSERT_TRUE(r.try_acquire(0, &s)) << "ring full with only " << held.size() << " held";
      ASSERT_LT(s, kWindow);
      ASSERT_FALSE(busy[s]) << "slot " << s << " handed out twice while held (task " << acquired << ")";
      busy[s] = true;
      held.push_back(s);
      ++acquired;
    } else {
      size_t i = rng() % held.size();
      SlotIndex s = held[i];
      held[i] = held.back();
      held.pop_back();
      busy[s] = false;
      r.release(0, s);
    }
    ASSERT_EQ(r.in_use(), held.size());
    if (held.size() == kWindow) {
      SlotIndex s;
      ASSERT_FALSE(r.try_acquire(0, &s));
    }
  }
  EXPECT_EQ(r.in_use(), 0u);
}

TEST(Ring, ConcurrentAcquireReleaseNeverSharesASlot) {
  constexpr uint32_t kWindow = 8;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kPerThread = 2000;
#else
  constexpr int kPerThread = 10000;
#endif
  constexpr int kThreads = 4;
  Ring r(kWindow);
  std::vector<std::atomic<int>> owner(kWindow);
  for (auto& o : owner) o = -1;
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<SlotIndex> mine;
      for (int i = 0; i < kPerThread; ++i) {
        // Hold at most 2 each: 4 threads x 2 = window, so acquire never deadlocks.
        if (mine.size() < 2) {
          SlotIndex s = r.acquire(0, {}, 1ms);
          int expect = -1;
          if (s >= kWindow || !owner[s].compare_exchange_strong(expect, t)) errors.fetch_add(1);
          mine.push_back(s);
        }
        if (!mine.empty() && rng() % 2 == 0) {
          SlotIndex s = mine[rng() % mine.size()];
          mine.erase(std::find(mine.begin(), mine.end(), s));
          owner[s] = -1;
          r.release(0, s);
        }
      }
      for (SlotIndex s : mine) {
        owner[s] = -1;
        r.release(0, s);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(r.in_use(), 0u);
}

// --- sharing the window between sessions ----------------------------------

TEST(Ring, ASessionAloneMayFillTheWholeWindow) {
  Ring r(8);
  r.set_weight(1, 1);
  SlotIndex s;
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(r.try_acquire(1, &s));
  EXPECT_FALSE(r.try_acquire(1, &s));
  EXPECT_EQ(r.held(1), 8u);
  EXPECT_EQ(r.obtainable(1), 8u);
}

TEST(Ring, FreedSlotsGoToAWaitingSessionBelowItsShare) {
  // A backlogged session holds the whole window; a newcomer waits. Every
  // slot freed from then on goes to the newcomer until it reaches its share,
  // while the backlogged one cannot take any.
  Ring r(8);
  std::vector<SlotIndex> heavy(8);
  for (auto& s : heavy) ASSERT_TRUE(r.try_acquire(1, &s));
  std::atomic<int> got{0};
  std::vector<SlotIndex> light;
  std::mutex mu;
  std::thread newcomer([&] {
    for (int i = 0; i < 4; ++i) {
      SlotIndex s = r.acquire(2, {});
      std::lock_guard<std::mutex> lock(mu);
      light.push_back(s);
      got.fetch_add(1);
    }
  });
  for (int i = 0; i < 4; ++i) {
    // Wait until the newcomer is waiting, then free one heavy slot.
    while (got.load() != i) std::this_thread::yield();
    std::this_thread::sleep_for(5ms);
    r.release(1, heavy.back());
    heavy.pop_back();
    SlotIndex s;
    bool took = r.try_acquire(1, &s);
    if (took) r.release(1, s);
    EXPECT_FALSE(took) << "the backlogged session took a slot the waiting one is owed";
  }
  newcomer.join();
  EXPECT_EQ(r.held(2), 4u);
  EXPECT_EQ(r.held(1), 4u);
  EXPECT_EQ(r.obtainable(1), 4u) << "beside another session, each can count on its share";
  for (SlotIndex s : light) r.release(2, s);
  EXPECT_EQ(r.obtainable(1), 8u);
}

TEST(Ring, WeightsSetTheShares) {
  Ring r(12);
  r.set_weight(1, 3);
  r.set_weight(2, 1);
  SlotIndex s;
  ASSERT_TRUE(r.try_acquire(1, &s));
  ASSERT_TRUE(r.try_acquire(2, &s));
  EXPECT_EQ(r.obtainable(1), 9u);
  EXPECT_EQ(r.obtainable(2), 3u);
}

TEST(Ring, NoFreeSlotIdlesWhileSomeoneMayHaveIt) {
  // Both sessions wait and both are at their share: the free slot still
  // goes to one of them (work-conserving), no one waits for nothing.
  Ring r(5);
  std::vector<SlotIndex> a(2), b(2);
  for (auto& s : a) ASSERT_TRUE(r.try_acquire(1, &s));
  for (auto& s : b) ASSERT_TRUE(r.try_acquire(2, &s));
  SlotIndex s;
  ASSERT_TRUE(r.try_acquire(1, &s)) << "a free slot, nobody waiting: take it";
  r.release(1, s);
  std::atomic<int> taken{0};
  std::thread t1([&] { r.acquire(1, {}); taken.fetch_add(1); });
  std::thread t2([&] { r.acquire(2, {}); taken.fetch_add(1); });
  auto t0 = std::chrono::steady_clock::now();
  while (taken.load() == 0 && std::chrono::steady_clock::now() - t0 < 10s) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(taken.load(), 1) << "the one free slot was taken by exactly one waiter";
  r.release(1, a.back());
  t1.join();
  t2.join();
  EXPECT_EQ(taken.load(), 2);
}
