// The task state machine as the Orchestrator and a hand-driven "scheduler"
// see it: wiring, readiness, consumption rules, scopes, poisoning.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "engine_test_util.h"

using namespace tierflow;
using namespace tierflow::test;

namespace {
struct Harness {
  TaskGraph graph{8, nullptr};
  std::vector<SlotIndex> ready;
  Orchestrator orch{graph, [this](SlotIndex s) { ready.push_back(s); }, 1 << 16};

  std::pair<SlotIndex, TaskId> submit(std::initializer_list<Access> a) { return orch.submit(request(a)); }
  bool is_ready(SlotIndex s) const { return std::find(ready.begin(), ready.end(), s) != ready.end(); }
  // Finishes a task the way the scheduler does; returns what became ready.
  std::vector<SlotIndex> finish(SlotIndex s, const Outcome& o = ok()) {
    std::vector<SlotIndex> out;
    graph.finish(s, o, &out);
    return out;
  }
  const char* state(std::pair<SlotIndex, TaskId> t) const { return to_string(graph.state_of(t.first, t.second)); }
};
}  // namespace

TEST(TaskGraph, IndependentTaskIsReadyAtOnceAndConsumedWhenFinished) {
  Harness h;
  auto a = h.submit({{0, 8, Out}});
  EXPECT_TRUE(h.is_ready(a.first));
  EXPECT_STREQ(h.state(a), "pending");  // the scheduler marks it ready when it routes it
  h.finish(a.first);
  EXPECT_STREQ(h.state(a), "consumed");
  EXPECT_EQ(h.graph.ring().in_use(), 0u);
}

TEST(TaskGraph, ConsumerWaitsForProducerAndHoldsItUntilConsumerFinishes) {
  Harness h;
  auto p = h.submit({{0, 8, Out}});
  auto c = h.submit({{0, 8, In}});
  EXPECT_FALSE(h.is_ready(c.first));
  auto now_ready = h.finish(p.first);
  EXPECT_EQ(now_ready, std::vector<SlotIndex>{c.first});
  // The producer completed but its consumer still holds a reference.
  EXPECT_STREQ(h.state(p), "completed");
  h.finish(c.first);
  EXPECT_STREQ(h.state(p), "consumed");
  EXPECT_STREQ(h.state(c), "consumed");
}

TEST(TaskGraph, ScopeReferenceKeepsFinishedTasksUntilScopeEnds) {
  Harness h;
  h.orch.scope_begin();
  auto a = h.submit({{0, 8, Out}});
  h.finish(a.first);
  EXPECT_STREQ(h.state(a), "completed");
  h.orch.scope_end();
  EXPECT_STREQ(h.state(a), "consumed");
}

TEST(TaskGraph, CompletedButNotConsumedProducerStillOrdersANewConsumer) {
  Harness h;
  h.orch.scope_begin();
  auto p = h.submit({{0, 8, Out}});
  h.finish(p.first);  // completed, held by the scope
  auto c = h.submit({{0, 8, In}});
  EXPECT_TRUE(h.is_ready(c.first));  // nothing left to wait for
  h.orch.scope_end();                 // drops p's scope ref; c's ref keeps p alive
  EXPECT_STREQ(h.state(p), "completed");
  h.finish(c.first);
  EXPECT_STREQ(h.state(p), "consumed");
}

TEST(TaskGraph, FailedProducerPoisonsConsumersTransitively) {
  Harness h;
  auto a = h.submit({{0, 8, Out}});
  auto b = h.submit({{0, 8, In}, {8, 16, Out}});
  auto c = h.submit({{8, 16, In}});
  auto now_ready = h.finish(a.first, failed());
  ASSERT_EQ(now_ready, std::vector<SlotIndex>{b.first});
  EXPECT_EQ(h.graph.slot(b.first).poisoned_by.load(), a.second);
  Outcome dep;
  dep.ok = false;
  dep.kind = "dependency_failed";
  auto next = h.finish(b.first, dep);
  ASSERT_EQ(next, std::vector<SlotIndex>{c.first});
  EXPECT_EQ(h.graph.slot(c.first).poisoned_by.load(), a.second);  // the root, not b
  h.finish(c.first, dep);
  auto fs = h.graph.take_failures();
  ASSERT_EQ(fs.size(), 3u);
  EXPECT_EQ(fs[1].cause, a.second);
  EXPECT_EQ(fs[2].cause, a.second);
  EXPECT_TRUE(h.graph.take_failures().empty());  // reported once
  EXPECT_STREQ(h.state(a), "failed");             // for good, even once consumed
  EXPECT_TRUE(h.graph.failure_of(a.second).has_value());
}

TEST(TaskGraph, ConsumedFailedTaskLeavesTombstoneUntilCleared) {
  Harness h;
  auto a = h.submit({{0, 8, Out}});
  h.finish(a.first, failed());
  EXPECT_EQ(h.graph.ring().in_use(), 0u);  // consumed
  auto b = h.submit({{4, 6, In}});
  EXPECT_TRUE(h.is_ready(b.first));
  EXPECT_EQ(h.graph.slot(b.first).poisoned_by.load(), a.second);
  h.graph.clear_failed_ranges();
  auto c = h.submit({{4, 6, In}});
  EXPECT_EQ(h.graph.slot(c.first).poisoned_by.load(), kNoTask);
}

TEST(TaskGraph, GroupNeverDependsOnItself) {
  Harness h;
  SubmitRequest g;
  g.kind = TaskKind::Group;
  g.members.push_back(args_of({{0, 16, InOut}}));
  g.members.push_back(args_of({{0, 16, InOut}}));
  auto t = h.orch.submit(std::move(g));
  EXPECT_TRUE(h.is_ready(t.first));
}

TEST(TaskGraph, WindowExhaustedWhenOwnScopesHoldEverySlot) {
  Harness h;
  h.orch.scope_begin();
  for (int i = 0; i < 8; ++i) h.finish(h.submit({}).first);
  try {
    h.submit({});
    FAIL() << "expected WindowExhausted";
  } catch (const WindowExhausted& e) {
    EXPECT_NE(std::string(e.what()).find("8 task slots"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("scope depth 1"), std::string::npos);
  }
  h.orch.scope_end();
  h.submit({});
}

TEST(TaskGraph, WaitUntilReportsTimeoutAndCompletion) {
  Harness h;
  auto a = h.submit({{0, 8, Out}});
  EXPECT_FALSE(h.graph.wait_until([&] { return h.graph.all_finished(); }, 20, {}, 5));
  h.finish(a.first);
  EXPECT_TRUE(h.graph.wait_until([&] { return h.graph.all_finished(); }, 20, {}, 5));
}
