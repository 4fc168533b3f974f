// GroupBarrier: rounds complete for every member, a break releases every
// waiter, and a member leaving after a completed round never turns that
// round into a broken one for the others. Run at several group sizes.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/distributed/processes/group_barrier.h"

using namespace tierflow;

class GroupBarrierSizes : public ::testing::TestWithParam<int> {};

TEST_P(GroupBarrierSizes, EveryRoundCompletesForEveryMember) {
  const int n = GetParam();
  constexpr int kRounds = 500;
  GroupBarrier b;
  b.arm(n);
  std::atomic<int> failures{0}, counter{0};
  std::vector<std::thread> ts;
  for (int m = 0; m < n; ++m)
    ts.emplace_back([&] {
      for (int r = 0; r < kRounds; ++r) {
        counter.fetch_add(1);
        if (!b.wait()) failures.fetch_add(1);
        // After round r every member has incremented r + 1 times.
        if (counter.load() < n * (r + 1)) failures.fetch_add(1);
        if (!b.wait()) failures.fetch_add(1);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_FALSE(b.broken());
}

TEST_P(GroupBarrierSizes, ABreakReleasesEveryWaiterAndLastsUntilRearmed) {
  const int n = GetParam();
  GroupBarrier b;
  b.arm(n + 1);  // one member never comes
  std::atomic<int> released{0};
  std::vector<std::thread> ts;
  for (int m = 0; m < n; ++m)
    ts.emplace_back([&] {
      if (!b.wait()) released.fetch_add(1);
    });
  while (b.arrived.load() < static_cast<uint32_t>(n)) std::this_thread::yield();
  b.break_it();
  for (auto& t : ts) t.join();
  EXPECT_EQ(released.load(), n);
  EXPECT_TRUE(b.broken());
  EXPECT_FALSE(b.wait()) << "a broken barrier stays broken";
  b.arm(1);
  EXPECT_FALSE(b.broken());
  EXPECT_TRUE(b.wait());
}

TEST_P(GroupBarrierSizes, LeavingRightAfterTheLastRoundDoesNotBreakIt) {
  // Each member passes the round, then "returns" and breaks the barrier, as a
  // child does when its group member finishes. Everyone must see the round
  // as completed, however the wake-ups and the breaks interleave.
  const int n = GetParam();
  for (int trial = 0; trial < 300; ++trial) {
    GroupBarrier b;
    b.arm(n);
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int m = 0; m < n; ++m)
      ts.emplace_back([&] {
        if (!b.wait()) failures.fetch_add(1);
        b.break_it();
      });
    for (auto& t : ts) t.join();
    ASSERT_EQ(failures.load(), 0) << "trial " << trial;
  }
}

INSTANTIATE_TEST_SUITE_P(Members, GroupBarrierSizes, ::testing::Values(2, 3, 4, 8));
