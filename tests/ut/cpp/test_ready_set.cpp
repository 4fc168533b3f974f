// ReadySet: which ready task an idle worker takes next, across sessions —
// weighted deficit round robin, FIFO within a session, one group head for
// everyone. No threads: the scheduler is the only caller.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "common/distributed/dispatch/ready_set.h"

using namespace tierflow;

namespace {

TaskId next_id = 1;

ReadyEntry entry(uint32_t session, TaskKind kind = TaskKind::Sub, int32_t target = -1, uint32_t cost = 1) {
  ReadyEntry e;
  e.slot = static_cast<SlotIndex>(next_id);
  e.id = next_id++;
  e.kind = kind;
  e.target = target;
  e.cost = cost;
  e.session = session;
  return e;
}

// The sessions of the next n sub pops, as a string ("AABA...").
std::string sub_order(ReadySet& r, int n) {
  std::string out;
  ReadyEntry e;
  for (int i = 0; i < n && r.pop_sub(&e); ++i) out += static_cast<char>('A' + e.session);
  return out;
}

}  // namespace

TEST(ReadySet, ASessionsTasksLeaveInTheOrderTheyBecameReady) {
  ReadySet r(2);
  std::vector<TaskId> ids;
  for (int i = 0; i < 10; ++i) {
    ReadyEntry e = entry(0);
    ids.push_back(e.id);
    r.push(e);
  }
  EXPECT_EQ(r.depth(), 10u);
  ReadyEntry e;
  for (TaskId want : ids) {
    ASSERT_TRUE(r.pop_sub(&e));
    EXPECT_EQ(e.id, want);
  }
  EXPECT_FALSE(r.pop_sub(&e));
  EXPECT_EQ(r.depth(), 0u);
}

TEST(ReadySet, EqualWeightsAlternate) {
  ReadySet r(1);
  for (int i = 0; i < 6; ++i) r.push(entry(0));
  for (int i = 0; i < 6; ++i) r.push(entry(1));
  EXPECT_EQ(sub_order(r, 12), "ABABABABABAB");
}

TEST(ReadySet, APassThatFindsNothingLeavesTheTurnWhereItWas) {
  // The scheduler asks for a group before it asks for a chip task; when no
  // session has a group, that pass must not move the round on.
  ReadySet r(1);
  for (int i = 0; i < 6; ++i) r.push(entry(0, TaskKind::Chip));
  for (int i = 0; i < 6; ++i) r.push(entry(1, TaskKind::Chip));
  std::string order;
  ReadyEntry e;
  for (int i = 0; i < 12; ++i) {
    EXPECT_FALSE(r.pop_group(&e));
    EXPECT_FALSE(r.pop_sub(&e));
    ASSERT_TRUE(r.pop_chip(0, &e));
    order += static_cast<char>('A' + e.session);
  }
  EXPECT_EQ(order, "ABABABABABAB");
}

TEST(ReadySet, WeightsSetTheShareOfTurns) {
  ReadySet r(1);
  r.set_weight(0, 3);
  r.set_weight(1, 1);
  for (int i = 0; i < 30; ++i) r.push(entry(0));
  for (int i = 0; i < 10; ++i) r.push(entry(1));
  std::string order = sub_order(r, 40);
  EXPECT_EQ(order.substr(0, 16), "AAABAAABAAABAAAB");
  std::map<char, int> first20;
  for (char c : order.substr(0, 20)) ++first20[c];
  EXPECT_EQ(first20['A'], 15);
  EXPECT_EQ(first20['B'], 5);
}

TEST(ReadySet, AnIdleSessionBanksNoCredit) {
  // A ran alone for a long time; when B arrives, they alternate at once:
  // A's past turns gave it no lead, and B's absence gave B none either.
  ReadySet r(1);
  for (int i = 0; i < 100; ++i) r.push(entry(0));
  EXPECT_EQ(sub_order(r, 50), std::string(50, 'A'));
  for (int i = 0; i < 4; ++i) r.push(entry(1));
  std::string order = sub_order(r, 8);
  EXPECT_EQ(std::count(order.begin(), order.end(), 'B'), 4) << order;
  EXPECT_EQ(order.find("BB"), std::string::npos) << order;
}

TEST(ReadySet, ANewcomerWaitsAtMostOneRoundBehindABacklog) {
  ReadySet r(1);
  for (int s = 0; s < 4; ++s)
    for (int i = 0; i < 1000; ++i) r.push(entry(s));
  ReadyEntry light = entry(4);
  r.push(light);
  ReadyEntry e;
  int pops = 0;
  do {
    ASSERT_TRUE(r.pop_sub(&e));
    ++pops;
  } while (e.id != light.id);
  EXPECT_LE(pops, 5) << "one turn of each backlogged session at most";
}

TEST(ReadySet, AGroupCostsItsSize) {
  // Session A submits groups of 4 chips, B single-chip tasks, equal
  // weights: in chip units they share evenly.
  ReadySet r(4);
  for (int i = 0; i < 25; ++i) r.push(entry(0, TaskKind::Group, -1, 4));
  for (int i = 0; i < 100; ++i) r.push(entry(1, TaskKind::Chip));
  int units[2] = {0, 0};
  ReadyEntry e;
  for (int turn = 0; turn < 100; ++turn) {
    // An idle chip asks for a group first (the scheduler's order), then work.
    if (r.pop_group(&e)) units[e.session] += e.cost;
    if (r.pop_chip(0, &e)) units[e.session] += e.cost;
  }
  EXPECT_GT(units[0], 0);
  EXPECT_GT(units[1], 0);
  double ratio = double(units[0]) / units[1];
  EXPECT_GT(ratio, 0.8) << units[0] << " vs " << units[1];
  EXPECT_LT(ratio, 1.25) << units[0] << " vs " << units[1];
}

TEST(ReadySet, AChipTakesOnlyWhatItCanRunOldestFirst) {
  ReadySet r(3);
  ReadyEntry to2 = entry(0, TaskKind::Chip, 2);
  ReadyEntry any = entry(0, TaskKind::Chip);
  ReadyEntry to1 = entry(0, TaskKind::Chip, 1);
  r.push(to2);
  r.push(any);
  r.push(to1);
  ReadyEntry e;
  ASSERT_TRUE(r.pop_chip(1, &e));
  EXPECT_EQ(e.id, any.id) << "older than the task directed to chip 1";
  ASSERT_TRUE(r.pop_chip(1, &e));
  EXPECT_EQ(e.id, to1.id);
  EXPECT_FALSE(r.pop_chip(1, &e)) << "never a task directed to another chip";
  EXPECT_FALSE(r.pop_chip(0, &e));
  EXPECT_TRUE(r.has_directed(2));
  ASSERT_TRUE(r.pop_chip(2, &e));
  EXPECT_EQ(e.id, to2.id);
  EXPECT_FALSE(r.pop_sub(&e));
}

TEST(ReadySet, GroupsOfEverySessionShareOneRoundRobin) {
  ReadySet r(4);
  for (int s = 0; s < 3; ++s)
    for (int i = 0; i < 3; ++i) r.push(entry(s, TaskKind::Group, -1, 2));
  std::string order;
  ReadyEntry e;
  while (r.pop_group(&e)) order += static_cast<char>('A' + e.session);
  EXPECT_EQ(order.size(), 9u);
  EXPECT_EQ(order.substr(0, 3).find_first_not_of("ABC"), std::string::npos);
  for (char c : std::string("ABC")) EXPECT_EQ(std::count(order.begin(), order.begin() + 6, c), 2) << order;
}

TEST(ReadySet, RemoveIfTakesEntriesOutAndKeepsTheRoundConsistent) {
  ReadySet r(2);
  for (int i = 0; i < 5; ++i) r.push(entry(0));
  for (int i = 0; i < 5; ++i) r.push(entry(1));
  r.push(entry(1, TaskKind::Chip, 1));
  r.remove_if([](const ReadyEntry& e) { return e.session == 0; });
  EXPECT_EQ(r.depth(0), 0u);
  EXPECT_EQ(r.depth(1), 6u);
  EXPECT_EQ(sub_order(r, 10), "BBBBB");
  ReadyEntry e;
  EXPECT_TRUE(r.pop_chip(1, &e));
  EXPECT_EQ(r.depth(), 0u);
  r.push(entry(0));
  EXPECT_EQ(sub_order(r, 1), "A");
}
